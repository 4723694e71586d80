#!/bin/sh
# Fill in the pod's address and the seeds, then run Cassandra in the foreground.
#   POD_IP           this pod's address (the downward API's status.podIP); required
#   CASSANDRA_SEEDS  comma-separated seed addresses (host or host:port); default: this pod alone
set -eu
: "${POD_IP:?set POD_IP from the downward API (fieldRef status.podIP)}"
seeds="${CASSANDRA_SEEDS:-$POD_IP}"
conf=/tmp/cassandra-conf
mkdir -p "$conf" /var/lib/cassandra/logs
for file in cassandra.yaml logback.xml jvm.options; do
  sed -e "s|@POD_IP@|$POD_IP|g" -e "s|@SEEDS@|$seeds|g" "/opt/cassandra/conf/$file" >"$conf/$file"
done
# shellcheck disable=SC2046
exec java $(cat "$conf/jvm.options")
