#!/usr/bin/env bash
# Build the container images a real node runs, without Docker and without any registry.
#
# Usage: scripts/build-images.sh [base | headrace | cassandra | pause | coredns | all]...   (default: all)
#        scripts/build-images.sh cassandra-context DIR   (the Cassandra image's build context, for docker build)
#   base       Debian bookworm (minbase) from debootstrap: the BASE of every other image
#   headrace   the project's image, from the project's own Dockerfile (buildah bud, BASE = the base above)
#   cassandra  Cassandra 5.0.8 on the same base: Debian's Java 17, the jars the tests cache, uid 999,
#              cdc_enabled, configuration written by devservices/cassandra.py (e2e/images/cassandra/)
#   pause      the pod sandbox: a static 40-line C program (e2e/images/pause/pause.c)
#   coredns    cluster DNS: CoreDNS built from its Go module
# Result: OCI archives under $HEADRACE_CACHE/images/ named <image>-<key>.tar, where the key hashes
# every input (a changed source file makes a new archive; an unchanged one is reused), and a
# <image>.current file naming the newest. devservices/node.py imports them into containerd.
#
# Needs root, buildah, debootstrap (Debian packages; installed here when missing).
set -euo pipefail

cache="${HEADRACE_CACHE:-$HOME/.cache/headrace}"
images="$cache/images"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
coredns_version="${COREDNS_VERSION:-v1.14.7}"
cassandra_version="${CASSANDRA_VERSION:-5.0.8}"
python="${PYTHON:-$repo/.venv/bin/python}"
mkdir -p "$images"

log() { echo "build-images: $*"; }
die() { echo "build-images: $*" >&2; exit 1; }

[ "${1:-}" = cassandra-context ] || [ "$(id -u)" -eq 0 ] || die "needs root (buildah and debootstrap build root filesystems)"
for tool in buildah debootstrap; do
  [ "${1:-}" != cassandra-context ] || break
  command -v "$tool" >/dev/null && continue
  log "installing Debian package $tool"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; } \
    || die "apt-get install $tool failed"
done

# key FILE...: a short hash of the files' contents and names.
key() { (cd "$repo" && sha256sum "$@" | sha256sum | cut -c1-16); }

# have NAME KEY: the archive for this key exists (then record it as current).
have() {
  if [ -f "$images/$1-$2.tar" ]; then
    echo "$1-$2.tar" >"$images/$1.current"
    log "$1: cached ($images/$1-$2.tar)"
    return 0
  fi
  return 1
}

# save NAME KEY REF: push a buildah image to an OCI archive, keep only this key's archive.
save() {
  local name="$1" k="$2" ref="$3"
  rm -f "$images/$name"-*.tar
  buildah push -q "$ref" "oci-archive:$images/.$name.tmp:$ref" >/dev/null
  mv "$images/.$name.tmp" "$images/$name-$k.tar"
  echo "$name-$k.tar" >"$images/$name.current"
  log "$name: built -> $images/$name-$k.tar"
}

# The host's CA bundle, for hosts whose HTTPS goes through a TLS-inspecting proxy (pip, cargo).
ca_args=()
host_ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -f "$host_ca" ]; then
  ca_args=(-v "$host_ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt
    --build-arg CARGO_HTTP_CAINFO=/run/host-ca.crt)
fi

base_ref="localhost/headrace-base:$suite"
base_key="$(echo "$suite $mirror minbase v1" | sha256sum | cut -c1-16)"

build_base() {
  if have base "$base_key"; then
    buildah inspect "$base_ref" >/dev/null 2>&1 || buildah pull -q "oci-archive:$images/base-$base_key.tar" >/dev/null
    return 0
  fi
  local root
  root="$(mktemp -d)"
  log "base: debootstrap --variant=minbase $suite (about a minute)"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$images/.debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $images/.debootstrap.log"
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s-security %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "${mirror%/debian}/debian" "$suite" >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  local container
  container="$(buildah from scratch)"
  tar -C "$root" -cf "$images/.rootfs.tar" .
  buildah add "$container" "$images/.rootfs.tar" / >/dev/null
  rm -f "$images/.rootfs.tar"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$container"
  buildah commit -q --rm "$container" "$base_ref" >/dev/null
  rm -rf "$root"
  save base "$base_key" "$base_ref"
}

build_headrace() {
  build_base
  local k
  # shellcheck disable=SC2046
  k="$(key Dockerfile .dockerignore pyproject.toml constraints.txt README.md \
    $(cd "$repo" && git ls-files pipeline_runtime operator native | grep -v '^native/target/'))-$base_key"
  k="$(echo "$k" | sha256sum | cut -c1-16)"
  have headrace "$k" && return 0
  log "headrace: buildah bud (Dockerfile, BASE=$base_ref)"
  buildah bud -q --layers --network host "${ca_args[@]}" --build-arg "BASE=$base_ref" \
    -t localhost/headrace:dev -f "$repo/Dockerfile" "$repo" >"$images/.headrace-build.log" 2>&1 \
    || { tail -30 "$images/.headrace-build.log" >&2; die "buildah bud of the Dockerfile failed: see $images/.headrace-build.log"; }
  save headrace "$k" localhost/headrace:dev
}

# cassandra_context DIR: the Cassandra image's build context (its folder, the cached jars, the config).
cassandra_context() {
  local jars="$cache/cassandra-$cassandra_version/lib"
  [ -d "$jars" ] || bash "$repo/scripts/fetch-cassandra.sh"
  mkdir -p "$1"
  cp -r "$repo/e2e/images/cassandra/." "$1/"
  cp -r "$jars" "$1/lib"
  "$python" -m devservices cassandra-image-config "$1/conf"
}

build_cassandra() {
  build_base
  local jars="$cache/cassandra-$cassandra_version/lib"
  [ -d "$jars" ] || bash "$repo/scripts/fetch-cassandra.sh"
  local k
  k="$( (cd "$repo" && sha256sum e2e/images/cassandra/* devservices/cassandra.py; ls "$jars") | sha256sum | cut -c1-16)-$base_key"
  k="$(echo "$k" | sha256sum | cut -c1-16)"
  have cassandra "$k" && return 0
  local context
  context="$(mktemp -d)"
  cassandra_context "$context"
  log "cassandra: buildah bud (e2e/images/cassandra/Dockerfile, BASE=$base_ref)"
  buildah bud -q --layers --network host --build-arg "BASE=$base_ref" \
    -t "localhost/cassandra:$cassandra_version" "$context" >"$images/.cassandra-build.log" 2>&1 \
    || { tail -30 "$images/.cassandra-build.log" >&2; die "buildah bud of the Cassandra image failed"; }
  rm -rf "$context"
  save cassandra "$k" "localhost/cassandra:$cassandra_version"
}

# scratch_image NAME REF BINARY: an image holding one static binary as its entrypoint.
scratch_image() {
  local name="$1" ref="$2" binary="$3" container
  container="$(buildah from scratch)"
  buildah copy "$container" "$binary" "/$name" >/dev/null
  buildah config --entrypoint "[\"/$name\"]" --user 65532:65532 "$container"
  buildah commit -q --rm "$container" "$ref" >/dev/null
}

build_pause() {
  local k
  k="$(key e2e/images/pause/pause.c)"
  have pause "$k" && return 0
  local work
  work="$(mktemp -d)"
  gcc -Os -static -o "$work/pause" "$repo/e2e/images/pause/pause.c" || die "gcc -static pause.c failed"
  scratch_image pause localhost/pause:headrace "$work/pause"
  rm -rf "$work"
  save pause "$k" localhost/pause:headrace
}

build_coredns() {
  local k
  k="$(echo "coredns $coredns_version" | sha256sum | cut -c1-16)"
  have coredns "$k" && return 0
  command -v go >/dev/null || die "the Go toolchain is missing: it builds CoreDNS"
  local bin
  bin="$(mktemp -d)"
  log "coredns: go install github.com/coredns/coredns@$coredns_version"
  GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local \
    GOBIN="$bin" go install -p 2 -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$coredns_version" \
    || die "go install of CoreDNS failed"
  scratch_image coredns "localhost/coredns:$coredns_version" "$bin/coredns"
  rm -rf "$bin"
  save coredns "$k" "localhost/coredns:$coredns_version"
}

if [ "${1:-}" = cassandra-context ]; then
  cassandra_context "${2:?cassandra-context needs a folder}"
  exit 0
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(all)
for target in "${targets[@]}"; do
  case "$target" in
    base) build_base ;;
    headrace) build_headrace ;;
    cassandra) build_cassandra ;;
    pause) build_pause ;;
    coredns) build_coredns ;;
    all) build_base; build_pause; build_coredns; build_cassandra; build_headrace ;;
    *) die "unknown image '$target' (known: base headrace cassandra pause coredns all)" ;;
  esac
done
