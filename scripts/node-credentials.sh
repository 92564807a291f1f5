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
# management token and the CA key never leave the servers.
# It also revokes: an instance holding credentials (SSM parameters, or a token of this policy) that
# is no longer a pending, running, stopping or stopped instance of the cluster (terminated,
# shutting down, gone, or its routeleader:cluster tag removed) loses its token (deleted from
# Consul: every request with it gets 403) and its SSM parameters. A stopped instance keeps its
# own: it starts again with the token on its disk. The Consul client of such an instance is
# force-left once it has failed.
# Sandbox hooks as in bootstrap.sh: ROOT prefixes every path, programs come from PATH.
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
case $leader in
  "\"$PRIVATE_IP:"*) ;; # one Consul server per address: this one leads
  *)
    log "not the leader ($leader): nothing to do"
    exit 0
    ;;
esac

if ! consul_api GET "/v1/acl/policy/name/$POLICY" >/dev/null 2>&1; then
  body=$(sed "s#<cluster>#$RL_CLUSTER#g" "$ROOT$RL_POLICY_FILE" | python3 -c 'import json, sys
print(json.dumps({"Name": sys.argv[1], "Description": "routeleader agents of cluster " + sys.argv[2], "Rules": sys.stdin.read()}))' "$POLICY" "$RL_CLUSTER")
  consul_api PUT /v1/acl/policy "$body" >/dev/null
  log "created ACL policy $POLICY"
fi

# The cluster's instances, every state: pending and running ones get credentials; stopping and
# stopped ones keep theirs; any other has none.
listing=$(aws ec2 describe-instances --region "$REGION" --filters "Name=tag:routeleader:cluster,Values=$RL_CLUSTER" \
  --query "Reservations[].Instances[].join(':', [InstanceId, State.Name])" --output text)
mint=()
keep=" "
for entry in $listing; do
  case ${entry#*:} in
    pending | running)
      mint+=("${entry%%:*}")
      keep+="${entry%%:*} "
      ;;
    stopping | stopped) keep+="${entry%%:*} " ;;
  esac
done
# Who holds credentials: the SSM parameters of this step, and its tokens in Consul (a token whose
# parameters a failed run never wrote included).
declare -A has_token=() holders=() accessors=()
for name in $(aws ssm get-parameters-by-path --region "$REGION" --path "$PREFIX" --recursive \
  --query 'Parameters[].Name' --output text); do
  id=${name#"$PREFIX/"}
  id=${id%%/*}
  holders[$id]=1
  [ "$name" != "$PREFIX/$id/token" ] || has_token[$id]=1
done
while read -r node accessor; do
  [ -n "$node" ] || continue
  holders[$node]=1
  accessors[$node]+="$accessor "
done <<<"$(consul_api GET /v1/acl/tokens | python3 -c 'import json, sys
for t in json.load(sys.stdin):
    nodes = [n["NodeName"] for n in t.get("NodeIdentities") or []]
    if len(nodes) == 1 and t.get("Description") == "routeleader NAT node " + nodes[0] and sys.argv[1] in [p["Name"] for p in t.get("Policies") or []]:
        print(nodes[0], t["AccessorID"])' "$POLICY")"

# revoke ID WHY: deletes the instance's tokens from Consul, then its SSM parameters.
revoke() {
  local accessor n=0
  for accessor in ${accessors[$1]:-}; do
    consul_api DELETE "/v1/acl/token/$accessor" >/dev/null
    n=$((n + 1))
  done
  aws ssm delete-parameters --region "$REGION" --names "$PREFIX/$1/token" "$PREFIX/$1/cert" "$PREFIX/$1/key" >/dev/null
  log "revoked the credentials of $1 ($2): $n Consul token(s) deleted, $PREFIX/$1/ deleted"
}

for id in "${mint[@]}"; do
  [ -z "${has_token[$id]:-}" ] || continue
  # A run that stopped half-way (no token parameter) left a certificate or a token: start afresh.
  [ -z "${holders[$id]:-}" ] || revoke "$id" "unfinished by an earlier run"
  started=$SECONDS
  work=$(mktemp -d)
  (cd "$work" && "$ROOT$CONSUL_BIN" tls cert create -client -dc "$RL_CONSUL_DATACENTER" -days 1825 \
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

for id in "${!holders[@]}"; do
  [[ $keep == *" $id "* ]] || revoke "$id" "terminated or no longer in cluster $RL_CLUSTER"
done

# The Consul clients of gone NAT instances, once failed, are force-left (pruned): they leave the
# member list now rather than after Consul's 72 h reap, and the agents need no operator right.
# Never a server, never a member that is not failed, never one whose instance is kept (a stopped
# instance comes back).
while read -r node; do
  [ -n "$node" ] || continue
  [[ $keep == *" $node "* ]] && continue
  if consul_api PUT "/v1/agent/force-leave/$node?prune" >/dev/null; then
    log "force-left the Consul client $node (failed; instance terminated or no longer in cluster $RL_CLUSTER)"
  else
    log "force-leave of the Consul client $node failed; trying again next run"
  fi
done <<<"$(consul_api GET /v1/agent/members | python3 -c 'import json, re, sys
for m in json.load(sys.stdin):
    if m.get("Status") == 4 and (m.get("Tags") or {}).get("role") == "node" and re.fullmatch(r"i-[0-9a-f]{8,17}", m["Name"]):
        print(m["Name"])')"
