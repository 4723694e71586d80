#!/usr/bin/env bash
# Build the envtest control plane (kube-apiserver, etcd, kubectl, helm; + controller-manager, scheduler, kwok)
# from public Go modules.
#
# Usage: scripts/build-envtest.sh [core | all | node | COMPONENT]...
#   core: kube-apiserver kubectl etcd helm (what the control_plane fixture needs);
#   all (the default): core + kube-controller-manager kube-scheduler kwok (Pods that run, on a fake node).
#   node: kubelet kube-proxy (a real node: `make node-up`, devservices/node.py).
# Result:  $HEADRACE_CACHE/envtest/<k8s version>/<binary>   (HEADRACE_CACHE defaults to ~/.cache/headrace)
#          -- point KUBEBUILDER_ASSETS at that folder.
# Settings (environment):
#   ENVTEST_K8S_VERSION   Kubernetes release to build (default 1.34.4)
#   ENVTEST_HELM_VERSION  helm release (default v3.19.0)
#   ENVTEST_KWOK_VERSION  kwok release (default v0.7.0)
#   ENVTEST_ETCD          "build" (default: go.etcd.io/etcd/server/v3 at the version k8s.io/kubernetes
#                         requires, 3.6.x for 1.34) or "debian" (apt package etcd-server 3.4.23: older than
#                         Kubernetes' documented minimum, lacks watch progress requests; works for tests)
#   ENVTEST_ETCD_VERSION  etcd release for ENVTEST_ETCD=build (default: the one k8s.io/kubernetes requires)
#   ENVTEST_BUILD_JOBS    go build -p (default 2: the machine's cores are shared)
#
# Why a wrapper module: k8s.io/kubernetes replaces its k8s.io/* staging modules with
# ./staging paths, so `go install k8s.io/kubernetes/cmd/...@v1.N.M` is refused. A module
# of our own that requires k8s.io/kubernetes v1.N.M and replaces every staging module by
# its published v0.N.M builds the same code. The replace list is read from that tag's
# go.mod, so a new release needs only a new ENVTEST_K8S_VERSION.
#
# Go caches: module cache and build cache live under $HEADRACE_CACHE/go (not the default
# GOPATH), so `rm -rf $HEADRACE_CACHE` gives a truly cold build and nothing leaks into ~/go.
# Idempotent: a binary already in the output folder is not rebuilt.
set -euo pipefail

k8s_version="${ENVTEST_K8S_VERSION:-1.34.4}"
k8s_version="${k8s_version#v}"
helm_version="${ENVTEST_HELM_VERSION:-v3.19.0}"
kwok_version="${ENVTEST_KWOK_VERSION:-v0.7.0}"
etcd_mode="${ENVTEST_ETCD:-build}"
jobs="${ENVTEST_BUILD_JOBS:-2}"
cache="${HEADRACE_CACHE:-$HOME/.cache/headrace}"
out="$cache/envtest/$k8s_version"
src="$cache/envtest/src/k8s-$k8s_version"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
export GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

default_components=(kube-apiserver kubectl etcd helm)
extra_components=(kube-controller-manager kube-scheduler kwok)
node_components=(kubelet kube-proxy)
# Each argument is a group (all, core, node) or one component; no argument means all.
[ "$#" -gt 0 ] || set -- all
components=()
for argument in "$@"; do
  case "$argument" in
    all) components+=("${default_components[@]}" "${extra_components[@]}") ;;
    core) components+=("${default_components[@]}") ;;
    node) components+=("${node_components[@]}") ;;
    *) components+=("$argument") ;;
  esac
done
for component in "${components[@]}"; do
  case " ${default_components[*]} ${extra_components[*]} " in
    *" $component "*) ;;
    *) case " ${node_components[*]} " in
         *" $component "*) ;;
         *) echo "build-envtest: unknown component '$component' (known: core all node ${default_components[*]} ${extra_components[*]} ${node_components[*]})" >&2; exit 2 ;;
       esac ;;
  esac
done

log() { echo "build-envtest: $*"; }
die() { echo "build-envtest: $*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null || die "the Go toolchain (go >= 1.24) is missing; install it and rerun"
  local minor
  minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
  [ "$minor" -ge 24 ] || die "go $(go env GOVERSION) is too old: Kubernetes $k8s_version needs go >= 1.24"
}

# apt-get install PACKAGE unless COMMAND is already on PATH.
apt_install() {
  local command="$1" package="$2"
  command -v "$command" >/dev/null && return 0
  log "installing Debian package $package (for $command)"
  # Try the package lists already on the machine first; a fresh machine has none, so update and retry.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; } \
    || die "apt-get install $package failed"
}

ldflags_for_k8s() {
  local minor
  minor="$(echo "$k8s_version" | cut -d. -f2)"
  local flags="-s -w"
  local pkg
  # component-base/version feeds /version of the servers; client-go's copy feeds kubectl's client version.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=v$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# Write (once) the wrapper module that requires k8s.io/kubernetes and replaces its staging modules.
prepare_k8s_module() {
  # Re-resolve when tools.go (the list of commands) changed since the last tidy.
  [ -f "$src/.tidy" ] && cmp -s "$here/envtest/tools.go" "$src/tools.go" && return 0
  log "preparing wrapper module for k8s.io/kubernetes v$k8s_version in $src"
  rm -rf "$src" && mkdir -p "$src"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v$k8s_version" | sed -n -E 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$k8s_version from the Go module proxy"
  local staging
  staging="$(sed -n -E 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/.*$#\1#p' "$gomod")"
  [ -n "$staging" ] || die "no './staging' replace lines in $gomod: cannot derive the staging modules"
  local go_line
  go_line="$(sed -n -E 's/^go ([0-9.]+)$/\1/p' "$gomod")"
  {
    echo "// Generated by scripts/build-envtest.sh: builds Kubernetes v$k8s_version commands."
    echo "module headrace.io/envtest"
    echo
    echo "go $go_line"
    echo
    echo "require k8s.io/kubernetes v$k8s_version"
    echo
    echo "replace ("
    local module
    for module in $staging; do
      echo "	$module => $module v0.${k8s_version#1.}"
    done
    echo ")"
  } >"$src/go.mod"
  cp "$here/envtest/tools.go" "$src/tools.go"
  log "  $(echo "$staging" | wc -l) staging modules replaced by v0.${k8s_version#1.}; resolving with go mod tidy"
  (cd "$src" && go mod tidy) || die "go mod tidy failed in $src"
  touch "$src/.tidy"
}

# build_k8s NAME: go build k8s.io/kubernetes/cmd/NAME into the output folder.
build_k8s() {
  local name="$1"
  prepare_k8s_module
  (cd "$src" && go build -p "$jobs" -trimpath -ldflags "$(ldflags_for_k8s)" -o "$out/.$name.tmp" "k8s.io/kubernetes/cmd/$name") \
    || die "go build of k8s.io/kubernetes/cmd/$name failed"
  mv "$out/.$name.tmp" "$out/$name"
}

# go install PACKAGE@VERSION with GOBIN at a scratch folder, then move BINARY into place.
go_install() {
  local binary="$1" package="$2" ldflags="-s -w ${3:-}"
  local bin="$out/.gobin-$binary"
  rm -rf "$bin" && mkdir -p "$bin"
  GOBIN="$bin" go install -p "$jobs" -trimpath -ldflags "$ldflags" "$package" || die "go install $package failed"
  mv "$bin/$binary" "$out/$binary" && rm -rf "$bin"
}

# Stamp helm as its Makefile does: its own version, and the Kubernetes version that
# `helm template` / `helm lint` assume (1.<minor of the client-go it is built with>).
ldflags_for_helm() {
  local gomod client_go_minor
  gomod="$(go mod download -json "helm.sh/helm/v3@$helm_version" | sed -n -E 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  client_go_minor="$(sed -n -E 's/^\s*k8s\.io\/client-go v0\.([0-9]+)\..*/\1/p' "$gomod" | head -1)"
  local flags="-X helm.sh/helm/v3/internal/version.version=$helm_version"
  flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  if [ -n "$client_go_minor" ]; then
    local pkg
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_go_minor"
    done
  fi
  echo "$flags"
}

build_etcd() {
  if [ "$etcd_mode" = debian ]; then
    apt_install etcd etcd-server
    ln -sf "$(command -v etcd)" "$out/etcd"
    return 0
  fi
  [ "$etcd_mode" = build ] || die "ENVTEST_ETCD must be 'debian' or 'build', not '$etcd_mode'"
  # etcd's server module also replaces its sibling modules with local paths: same wrapper trick.
  local version="${ENVTEST_ETCD_VERSION:-}"
  if [ -z "$version" ]; then
    prepare_k8s_module
    version="$(cd "$src" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  fi
  local etcd_src="$cache/envtest/src/etcd-$version"
  if [ ! -f "$etcd_src/.tidy" ]; then
    rm -rf "$etcd_src" && mkdir -p "$etcd_src"
    printf 'module headrace.io/envtest-etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$version" >"$etcd_src/go.mod"
    printf '//go:build tools\n\npackage etcd\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$etcd_src/tools.go"
    (cd "$etcd_src" && go mod tidy) || die "go mod tidy failed in $etcd_src"
    touch "$etcd_src/.tidy"
  fi
  (cd "$etcd_src" && go build -p "$jobs" -trimpath \
    -ldflags "-s -w" -o "$out/.etcd.tmp" go.etcd.io/etcd/server/v3) || die "go build of etcd $version failed"
  rm -f "$out/etcd" && mv "$out/.etcd.tmp" "$out/etcd"
}

build_one() {
  case "$1" in
    kube-apiserver | kubectl | kube-controller-manager | kube-scheduler | kubelet | kube-proxy) build_k8s "$1" ;;
    etcd) build_etcd ;;
    helm) go_install helm "helm.sh/helm/v3/cmd/helm@$helm_version" "$(ldflags_for_helm)" ;;
    kwok) go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$kwok_version" ;;
    *) die "unknown component '$1' (known: ${default_components[*]} ${extra_components[*]} ${node_components[*]})" ;;
  esac
}

mkdir -p "$out"
# devservices/envtest.py makes the control plane's certificates with the openssl CLI.
apt_install openssl openssl
total_start=$(date +%s)
built=0
for component in "${components[@]}"; do
  if [ -x "$out/$component" ]; then
    log "$component: cached in $out"
    continue
  fi
  [ "$component" = etcd ] && [ "$etcd_mode" = debian ] || need_go
  log "$component: building (Kubernetes v$k8s_version, go build -p $jobs)"
  start=$(date +%s)
  build_one "$component"
  built=$((built + 1))
  log "$component: built in $(($(date +%s) - start))s -> $out/$component"
done
if [ "$built" -gt 0 ]; then
  log "built $built binaries in $(($(date +%s) - total_start))s"
fi
log "export KUBEBUILDER_ASSETS=$out"
