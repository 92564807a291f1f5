#!/usr/bin/env bash
# routeleader user data (after the settings header the stack writes): fetches the release
# artifact from RL_ARTIFACT_URL (s3:// or https://), installs it only if its sha256 is
# RL_ARTIFACT_SHA256, runs the bootstrap.sh it carries, waits until this node is healthy and
# signals CloudFormation (SUCCESS, or FAILURE with the reason on the console). Docs:
# docs/deploy.md. Sandbox hooks: ROOT prefixes every path written, programs come from PATH,
# RL_IMDS_ENDPOINT, RL_CONSUL_HTTP_ADDR and RL_AGENT_HTTP replace the instance's endpoints.
set -eEuo pipefail
ROOT=${ROOT:-}
RL_ROLE=${RL_ROLE:-nat}
RL_IMDS_ENDPOINT=${RL_IMDS_ENDPOINT:-http://169.254.169.254}
RL_CONSUL_SECURITY=${RL_CONSUL_SECURITY:-secure}
# secure mode serves the local Consul API over HTTPS only, on loopback.
if [ "$RL_CONSUL_SECURITY" = secure ]; then
  RL_CONSUL_HTTP_ADDR=${RL_CONSUL_HTTP_ADDR:-https://127.0.0.1:8501}
else
  RL_CONSUL_HTTP_ADDR=${RL_CONSUL_HTTP_ADDR:-http://127.0.0.1:8500}
fi
RL_AGENT_HTTP=${RL_AGENT_HTTP:-http://127.0.0.1:9731}
RL_HEALTH_TIMEOUT=${RL_HEALTH_TIMEOUT:-600}
RL_SIGNAL_STACK=${RL_SIGNAL_STACK:-}
RL_SIGNAL_RESOURCE=${RL_SIGNAL_RESOURCE:-}
RL_SIGNAL_BY_SUBNET=${RL_SIGNAL_BY_SUBNET:-}
INSTANCE_ID="" REGION=""

log() { printf 'routeleader-launch: %s\n' "$*" >&2; }
# The console (EC2 get-console-output) gets the verdict, whatever cloud-init does with stdout.
console() {
  log "$*"
  if [ -w "$ROOT/dev/console" ]; then printf 'routeleader-launch: %s\n' "$*" >>"$ROOT/dev/console" || true; fi
}
signal() { # signal SUCCESS|FAILURE
  if [ -z "$RL_SIGNAL_STACK" ] || [ -z "$RL_SIGNAL_RESOURCE" ] || [ -z "$INSTANCE_ID" ]; then
    log "no CloudFormation signal ($1): stack, resource or instance id unknown"
    return 0
  fi
  aws cloudformation signal-resource --region "$REGION" --stack-name "$RL_SIGNAL_STACK" \
    --logical-resource-id "$RL_SIGNAL_RESOURCE" --unique-id "$INSTANCE_ID" --status "$1" ||
    log "signal-resource $1 failed"
}
fail() {
  trap - ERR
  [ -z "${work:-}" ] || rm -rf "$work"
  console "FAILED on $INSTANCE_ID: $*"
  signal FAILURE
  exit 1
}
trap 'fail "line $LINENO: \`$BASH_COMMAND\` exited with $?"' ERR

for v in RL_ARTIFACT_URL RL_ARTIFACT_SHA256; do [ -n "${!v:-}" ] || fail "$v is required"; done
[[ $RL_ARTIFACT_SHA256 =~ ^[0-9a-f]{64}$ ]] || fail "RL_ARTIFACT_SHA256 must be 64 lowercase hex digits"

TOKEN=$(curl -fsS --max-time 2 --retry 10 --retry-delay 1 --retry-connrefused -X PUT \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$RL_IMDS_ENDPOINT/latest/api/token")
imds() { curl -fsS --max-time 2 --retry 5 --retry-delay 1 -H "X-aws-ec2-metadata-token: $TOKEN" "$RL_IMDS_ENDPOINT/latest/meta-data/$1"; }
INSTANCE_ID=$(imds instance-id)
REGION=$(imds placement/region)
if [ -z "$RL_SIGNAL_RESOURCE" ] && [ -n "$RL_SIGNAL_BY_SUBNET" ]; then
  # One launch template serves a group per AZ: the subnet says which group this instance is in.
  subnet=$(imds "network/interfaces/macs/$(imds mac)/subnet-id")
  IFS=, read -r -a pairs <<<"$RL_SIGNAL_BY_SUBNET"
  for p in "${pairs[@]}"; do if [ "${p%%=*}" = "$subnet" ]; then RL_SIGNAL_RESOURCE=${p#*=}; fi; done
  [ -n "$RL_SIGNAL_RESOURCE" ] || fail "subnet $subnet is none of the stack's NAT subnets ($RL_SIGNAL_BY_SUBNET)"
fi
export INSTANCE_ID REGION
log "instance $INSTANCE_ID in $REGION, role $RL_ROLE, signals ${RL_SIGNAL_RESOURCE:-nothing}"

# fetch_verified URL SHA256 FILE: downloads URL to FILE; on a checksum mismatch deletes it and fails.
fetch_verified() {
  case $1 in
    s3://*) aws s3 cp --only-show-errors --region "$REGION" "$1" "$3" || fail "download of $1 failed" ;;
    https://*) curl -fsSL --proto '=https' --retry 5 --max-time 600 -o "$3" "$1" || fail "download of $1 failed" ;;
    *) fail "$1: only s3:// and https:// locations are accepted" ;;
  esac
  local got
  got=$(sha256sum "$3" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    rm -f "$3"
    fail "sha256 mismatch for $1: expected $2, got $got; nothing installed"
  fi
}

RELEASE=/opt/routeleader/releases/$RL_ARTIFACT_SHA256
if [ ! -f "$ROOT$RELEASE/routeleader/bootstrap.sh" ]; then
  mkdir -p "$ROOT/var/tmp"
  work=$(mktemp -d "$ROOT/var/tmp/routeleader-artifact.XXXXXX")
  fetch_verified "$RL_ARTIFACT_URL" "$RL_ARTIFACT_SHA256" "$work/artifact.tar.gz"
  mkdir "$work/tree"
  tar -xzf "$work/artifact.tar.gz" -C "$work/tree" --no-same-owner --no-same-permissions
  [ -f "$work/tree/routeleader/bootstrap.sh" ] || fail "the artifact holds no routeleader/bootstrap.sh"
  mkdir -p "$ROOT/opt/routeleader/releases"
  mv "$work/tree" "$ROOT$RELEASE"
  rm -rf "$work"
  work=""
  log "installed release $RL_ARTIFACT_SHA256 into $RELEASE"
fi

mkdir -p "$ROOT/var/tmp"
reason=$(mktemp "$ROOT/var/tmp/routeleader-reason.XXXXXX")
export RL_RELEASE_DIR=$RELEASE/routeleader RL_FAILURE_FILE=$reason
rc=0
bash "$ROOT$RL_RELEASE_DIR/bootstrap.sh" || rc=$?
if [ "$rc" -ne 0 ]; then
  why=$(cat "$reason")
  rm -f "$reason"
  fail "bootstrap: ${why:-exit code $rc} (journalctl -t routeleader-bootstrap)"
fi
rm -f "$reason"

# healthy: true when this node does its job; otherwise prints why not.
healthy() {
  systemctl is-active --quiet consul.service || { echo "consul.service is not running"; return 1; }
  local leader h
  local ca=() f
  # The CA of the local HTTPS API: existing mode's loopback CA, else the cluster's.
  for f in "$ROOT/etc/consul.d/tls/ca.pem" "$ROOT/etc/consul.d/tls/loopback-ca.pem"; do [ ! -f "$f" ] || ca=(--cacert "$f"); done
  leader=$(curl -fsS --max-time 2 "${ca[@]}" "$RL_CONSUL_HTTP_ADDR/v1/status/leader" 2>&1) || leader=""
  [[ $leader == *:* ]] || { echo "the Consul agent has not joined a cluster with a leader"; return 1; }
  [ "$RL_ROLE" = nat ] || return 0
  systemctl is-active --quiet routeleader.service || { echo "routeleader.service is not running"; return 1; }
  h=$(curl -sS --max-time 2 "$RL_AGENT_HTTP/healthz" 2>&1) || { echo "routeleader /healthz unreachable"; return 1; }
  [ "$h" = ok ] || { echo "routeleader /healthz: $h"; return 1; }
}
deadline=$((SECONDS + RL_HEALTH_TIMEOUT))
until why=$(healthy); do
  [ "$SECONDS" -lt "$deadline" ] || fail "not healthy after $RL_HEALTH_TIMEOUT s: $why"
  sleep 2
done
console "healthy: $RL_ROLE node $INSTANCE_ID is up"
signal SUCCESS
