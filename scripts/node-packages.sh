#!/usr/bin/env bash
# Install the Debian packages a real local node needs (devservices/node.py), when missing:
# containerd and runc (containers), containernetworking-plugins (the pods' bridge), iptables
# (kube-proxy's Service rules), buildah and debootstrap (scripts/build-images.sh).
set -euo pipefail
declare -A packages=(
  [containerd]=containerd [runc]=runc [iptables]=iptables [buildah]=buildah [debootstrap]=debootstrap
)
missing=()
for tool in "${!packages[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${packages[$tool]}")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "node-packages: as root, apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "node-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
