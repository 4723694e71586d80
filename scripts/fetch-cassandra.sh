#!/usr/bin/env bash
# Resolve Apache Cassandra's jars from Maven Central into the cache, keyed by version.
# Usage: scripts/fetch-cassandra.sh [VERSION]   (default: $CASSANDRA_VERSION or 5.0.8)
# Result: $HEADRACE_CACHE/cassandra-$VERSION/lib/*.jar   (HEADRACE_CACHE defaults to ~/.cache/headrace)
set -euo pipefail
version="${1:-${CASSANDRA_VERSION:-5.0.8}}"
cache="${HEADRACE_CACHE:-$HOME/.cache/headrace}"
home="$cache/cassandra-$version"
if [ -f "$home/.complete" ]; then
  echo "cassandra $version: cached in $home"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch-cassandra: mvn (Maven) is missing: apt-get install -y maven" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.headrace</groupId><artifactId>cassandra-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$version</version>
    </dependency>
  </dependencies>
</project>
POM
start=$(date +%s)
echo "cassandra $version: resolving org.apache.cassandra:cassandra-all:$version from Maven Central"
rm -rf "$home.tmp" && mkdir -p "$home.tmp"
if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DoutputDirectory="$home.tmp/lib" -DincludeScope=runtime; then
  echo "fetch-cassandra: Maven could not resolve org.apache.cassandra:cassandra-all:$version (see the output above)" >&2
  exit 1
fi
rm -rf "$home" && mv "$home.tmp" "$home" && touch "$home/.complete"
echo "cassandra $version: $(ls "$home/lib" | wc -l) jars in $home/lib ($(( $(date +%s) - start ))s)"
