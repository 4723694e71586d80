#!/usr/bin/env bash
# Check, before any test or demo runs, the tools Headrace cannot install by itself.
# Usage: scripts/check-prereqs.sh test|demo
# Prints one message naming every missing tool and what provides it, and exits 1; silent when all are present.
# Everything else (Python packages, Cassandra's jars, the Kubernetes binaries, PGlite) the Makefile
# fetches or builds by itself into $HEADRACE_CACHE.
set -euo pipefail
purpose="${1:-test}"
missing=()
need() {  # need COMMAND "what provides it"
  command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)")
}
need python3 "Debian packages python3 and python3-venv"
need java "Debian package openjdk-17-jre-headless: Cassandra 5.0 runs on Java 17"
need mvn "Debian package maven: fetches Cassandra's jars from Maven Central"
need psql "Debian package postgresql-client"
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=("postgres (Debian package postgresql)")
need cargo "the Rust toolchain (rustup): builds the compiled commitlog decoder"
if [ "$purpose" = test ]; then
  need go "the Go toolchain 1.24+: builds kube-apiserver, etcd, kubectl and helm"
  need node "Debian package nodejs: runs TimescaleDB (PGlite) for the TimescaleDB tests"
  need npm "Debian package npm: installs PGlite with the timescaledb extension"
  need openssl "Debian package openssl: makes the TLS test certificates"
fi
if [ "$(id -u)" = 0 ]; then
  need runuser "Debian package util-linux: starts PostgreSQL as the postgres user when run as root"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "make $purpose cannot start: missing" >&2
  for item in "${missing[@]}"; do echo "  - $item" >&2; done
  echo "Install them (.ci/run does so on Debian), then run make $purpose again." >&2
  exit 1
fi
