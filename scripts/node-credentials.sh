#!/usr/bin/env bash
# routeleader node credentials, run on the Consul servers of cloudformation/routeleader-nat.yaml
# every 10 s (routeleader-credentials.timer, written by bootstrap.sh) in secure mode. Only the
# server that is the Raft leader acts: for every NAT instance of the cluster (EC2 tag
# routeleader:cluster, pending or running) that has no credentials yet, it creates
#   - a Consul ACL token with the routeleader policy (consul-acl-policy.hcl of the release, for
#     this cluster) and a node identity for that instance only (node:write on itself), and
#   - a Consul client certificate signed by the cluster's CA,
# and stores them as SSM SecureString parameters /routeleader/<cluster>/nodes/<instance-id>/
# {cert,key,token} (token last: its presence means complete), tagged with the instance. The
# management token and the CA key never leave the servers. Sandbox hooks as in bootstrap.sh:
# ROOT prefixes every path, programs come from PATH.
set -euo pipefail
ROOT=${ROOT:-}
ENV_FILE=${RL_CREDENTIALS_ENV:-/etc/routeleader/credentials.env}
# shellcheck source=/dev/null
. "$ROOT$ENV_FILE"
: "${RL_CLUSTER:?}" "${REGION:?}" "${RL_CONSUL_DATACENTER:?}" "${PRIVATE_IP:?}" "${RL_POLICY_FILE:?}"
CONSUL_HTTPS=${CONSUL_HTTPS:-https://127.0.0.1:8501}
TLS_DIR=/etc/consul.d/tls
CONSUL_BIN=${CONSUL_BIN:-/usr/local/bin/consul}
PREFIX=/routeleader/$RL_CLUSTER/nodes
POLICY=routeleader-$RL_CLUSTER

log() { printf 'routeleader-credentials: %s\n' "$*" >&2; }
MGMT=$(cat "$ROOT/etc/consul.d/management-token")
# consul_api METHOD PATH [BODY]: the response body; fails on an HTTP error.
consul_api() {
  curl -fsS --max-time 10 --cacert "$ROOT$TLS_DIR/ca.pem" -H "X-Consul-Token: $MGMT" -X "$1" \
    ${3:+--data-binary "$3"} "$CONSUL_HTTPS$2"
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

leader=$(curl -fsS --max-time 5 --cacert "$ROOT$TLS_DIR/ca.pem" "$CONSUL_HTTPS/v1/status/leader")
if [ "$leader" != "\"$PRIVATE_IP:8300\"" ]; then
  log "not the leader ($leader): nothing to do"
  exit 0
fi

if ! consul_api GET "/v1/acl/policy/name/$POLICY" >/dev/null 2>&1; then
  body=$(sed "s#<cluster>#$RL_CLUSTER#g" "$ROOT$RL_POLICY_FILE" | python3 -c 'import json, sys
print(json.dumps({"Name": sys.argv[1], "Description": "routeleader agents of cluster " + sys.argv[2], "Rules": sys.stdin.read()}))' "$POLICY" "$RL_CLUSTER")
  consul_api PUT /v1/acl/policy "$body" >/dev/null
  log "created ACL policy $POLICY"
fi

instances=$(aws ec2 describe-instances --region "$REGION" \
  --filters "Name=tag:routeleader:cluster,Values=$RL_CLUSTER" "Name=instance-state-name,Values=pending,running" \
  --query 'Reservations[].Instances[].InstanceId' --output text)
for id in $instances; do
  if aws ssm get-parameter --region "$REGION" --name "$PREFIX/$id/token" --query Parameter.Name --output text >/dev/null 2>&1; then
    continue
  fi
  started=$SECONDS
  work=$(mktemp -d)
  (cd "$work" && "$ROOT$CONSUL_BIN" tls cert create -client -dc "$RL_CONSUL_DATACENTER" \
    -ca "$ROOT$TLS_DIR/ca.pem" -key "$ROOT$TLS_DIR/ca-key.pem" >/dev/null)
  body=$(python3 -c 'import json, sys
print(json.dumps({"Description": "routeleader NAT node " + sys.argv[1], "Policies": [{"Name": sys.argv[2]}],
                  "NodeIdentities": [{"NodeName": sys.argv[1], "Datacenter": sys.argv[3]}]}))' "$id" "$POLICY" "$RL_CONSUL_DATACENTER")
  token=$(consul_api PUT /v1/acl/token "$body" | json_field SecretID)
  for part in cert key token; do
    case $part in
      cert) value=$(cat "$work/$RL_CONSUL_DATACENTER-client-consul-0.pem") ;;
      key) value=$(cat "$work/$RL_CONSUL_DATACENTER-client-consul-0-key.pem") ;;
      token) value=$token ;;
    esac
    aws ssm put-parameter --region "$REGION" --type SecureString --name "$PREFIX/$id/$part" --value "$value" \
      --tags "Key=routeleader:instance,Value=$id" >/dev/null
  done
  rm -rf "$work"
  log "credentials for $id: token (routeleader policy + node identity $id) and client certificate in $PREFIX/$id/ ($((SECONDS - started)) s)"
done
