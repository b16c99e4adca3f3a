#!/bin/sh
# Creates the namespace and registers ob-takeover's search attributes once the server answers (run by the
# one-shot `temporal-namespace` job in the temporalio/admin-tools image; idempotent).
set -eu
address="${TEMPORAL_ADDRESS:-temporal:7233}"
namespace="${TEMPORAL_NAMESPACE:-default}"
attempt=0
until temporal operator cluster health --address "$address"; do
    attempt=$((attempt + 1))
    [ "$attempt" -lt 60 ] || { echo "Temporal at $address is not healthy"; exit 1; }
    sleep 2
done
temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1 ||
    temporal operator namespace create --namespace "$namespace" --retention 30d --address "$address"
for attribute in ObClusterName ObClusterAddress ObTaskStatus; do
    temporal operator search-attribute list --namespace "$namespace" --address "$address" | grep -q "$attribute" ||
        temporal operator search-attribute create --namespace "$namespace" --address "$address" \
            --name "$attribute" --type Keyword
done
echo "namespace $namespace is ready with ob-takeover's search attributes"
