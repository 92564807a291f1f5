#!/usr/bin/env bash
# routeleader instance bootstrap for the NAT nodes (RL_ROLE=nat) and the Consul servers
# (RL_ROLE=server) of cloudformation/routeleader-nat.yaml. Shipped inside the release artifact
# (routeleader/bootstrap.sh) and run by the user data (scripts/user-data.sh) once it verified
# that artifact. Installs Node.js 22 from the distribution (NAT), Consul from RL_CONSUL_URL only
# if its sha256 is RL_CONSUL_SHA256; IPv4 forwarding and MASQUERADE for the VPC CIDR (or, in the
# same-AZ mode, SNAT to the pair's secondary IP and conntrackd); Consul and routeleader configs;
# systemd units. Idempotent: a re-run writes nothing and restarts nothing.
# Logs: journalctl -t routeleader-bootstrap. Inputs (RL_* below) are documented in
# docs/deploy.md. Sandbox hooks: ROOT prefixes every path written, programs are found
# through PATH, RL_IMDS_ENDPOINT replaces http://169.254.169.254.
set -euo pipefail

ROOT=${ROOT:-}
RL_ROLE=${RL_ROLE:-nat}
RL_DESTINATION=${RL_DESTINATION:-0.0.0.0/0}
RL_PROFILE=${RL_PROFILE:-default}
RL_CHECK_HOST=${RL_CHECK_HOST:-1.1.1.1,8.8.8.8,9.9.9.9}
RL_CONSUL_DATACENTER=${RL_CONSUL_DATACENTER:-dc1}
RL_CONSUL_SERVERS=${RL_CONSUL_SERVERS:-3}
RL_CONSUL_URL=${RL_CONSUL_URL:-}
RL_CONSUL_SHA256=${RL_CONSUL_SHA256:-}
RL_RELEASE_DIR=${RL_RELEASE_DIR:-}
RL_LIFECYCLE_HOOK=${RL_LIFECYCLE_HOOK:-}
RL_FAILURE_FILE=${RL_FAILURE_FILE:-}
RL_IMDS_ENDPOINT=${RL_IMDS_ENDPOINT:-http://169.254.169.254}
RL_ROUTE_TABLE_IDS=${RL_ROUTE_TABLE_IDS:-}
RL_ROUTE_TABLE_TAG_KEY=${RL_ROUTE_TABLE_TAG_KEY:-}
RL_ROUTE_TABLE_TAG_VALUE=${RL_ROUTE_TABLE_TAG_VALUE:-}
RL_GOSSIP_KEY_PARAM=${RL_GOSSIP_KEY_PARAM:-}
RL_ACL_TOKEN_PARAM=${RL_ACL_TOKEN_PARAM:-}
# secure (default): gossip encryption, TLS for RPC, HTTPS-only agent API, ACLs deny by default.
RL_CONSUL_SECURITY=${RL_CONSUL_SECURITY:-secure}
RL_CA_PARAM=${RL_CA_PARAM:-}
RL_CA_KEY_PARAM=${RL_CA_KEY_PARAM:-}
RL_MANAGEMENT_TOKEN_PARAM=${RL_MANAGEMENT_TOKEN_PARAM:-}
RL_CREDENTIALS_TIMEOUT=${RL_CREDENTIALS_TIMEOUT:-600}
# Same-AZ connection-preserving mode: comma-separated ROUTE=SUBNET:PRIVATE_IP:EIP_ALLOCATION, ROUTE
# one of the routes below (nat-<table id>, or nat-default with the tag selector).
RL_SAME_AZ=${RL_SAME_AZ:-}
# NAT: the CloudWatch Logs group the agent's EMF lines are shipped to (empty: none shipped) and
# their namespace (the stack's MetricsNamespace, which its alarms read).
RL_LOG_GROUP=${RL_LOG_GROUP:-}
RL_METRICS_NAMESPACE=${RL_METRICS_NAMESPACE:-routeleader}

# Everything this run prints goes to the journal: re-execute under systemd-cat once.
if [ -z "${RL_BOOTSTRAP_IN_JOURNAL:-}" ] && command -v systemd-cat >/dev/null 2>&1; then
  export RL_BOOTSTRAP_IN_JOURNAL=1
  exec systemd-cat --identifier=routeleader-bootstrap "$BASH" "$0" "$@"
fi

log() { printf 'routeleader-bootstrap: %s\n' "$*" >&2; }
die() { # the reason also goes to RL_FAILURE_FILE, for the user data's console line and signal
  log "ERROR: $*"
  if [ -n "$RL_FAILURE_FILE" ]; then printf '%s\n' "$*" >"$RL_FAILURE_FILE" || true; fi
  exit 1
}

[ -n "${RL_CLUSTER:-}" ] || die "RL_CLUSTER is required"
case $RL_ROLE in nat | server) ;; *) die "RL_ROLE must be nat or server, not '$RL_ROLE'" ;; esac
case $RL_PROFILE in default | fast) ;; *) die "RL_PROFILE must be default or fast, not '$RL_PROFILE'" ;; esac
if [ "$RL_ROLE" = nat ]; then
  [ -n "${RL_VPC_CIDR:-}" ] || die "RL_VPC_CIDR is required for a NAT node"
  [ -n "$RL_ROUTE_TABLE_IDS" ] || [ -n "$RL_ROUTE_TABLE_TAG_KEY" ] ||
    die "set RL_ROUTE_TABLE_IDS or RL_ROUTE_TABLE_TAG_KEY/RL_ROUTE_TABLE_TAG_VALUE"
  [ -f "$ROOT$RL_RELEASE_DIR/dist/agent/cli.js" ] ||
    die "RL_RELEASE_DIR must name an extracted release (no dist/agent/cli.js in '$RL_RELEASE_DIR')"
fi
# The routes this node's config will have, by name.
ROUTE_NAMES=()
if [ -n "$RL_ROUTE_TABLE_IDS" ]; then
  IFS=, read -r -a tables <<<"$RL_ROUTE_TABLE_IDS"
  for t in "${tables[@]}"; do
    t=${t//[[:space:]]/}
    [ -z "$t" ] || ROUTE_NAMES+=("nat-$t")
  done
else
  ROUTE_NAMES=(nat-default)
fi
# RL_SAME_AZ parsed into SAME_AZ_SUBNET/IP/EIP by route name; checked whole before anything is written.
declare -A SAME_AZ_SUBNET=() SAME_AZ_IP=() SAME_AZ_EIP=()
if [ -n "$RL_SAME_AZ" ]; then
  [ "$RL_ROLE" = nat ] || die "RL_SAME_AZ is for NAT nodes, not a $RL_ROLE"
  [[ $RL_DESTINATION != *:* ]] || die "RL_SAME_AZ: the same-AZ mode SNATs IPv4; RL_DESTINATION $RL_DESTINATION is IPv6"
  declare -A seen_subnet=() seen_ip=()
  IFS=, read -r -a entries <<<"$RL_SAME_AZ"
  for e in "${entries[@]}"; do
    e=${e//[[:space:]]/}
    [ -n "$e" ] || continue
    octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
    [[ $e =~ ^(nat-[A-Za-z0-9-]+)=(subnet-[0-9a-f]+):($octet\.$octet\.$octet\.$octet):(eipalloc-[0-9a-f]{8,17})$ ]] ||
      die "RL_SAME_AZ entry '$e': expected ROUTE=SUBNET:PRIVATE_IP:EIP_ALLOCATION, e.g. nat-rtb-0abc=subnet-0abc:10.0.1.200:eipalloc-0123abcd"
    route=${BASH_REMATCH[1]} subnet=${BASH_REMATCH[2]} ip=${BASH_REMATCH[3]} eip=${BASH_REMATCH[8]}
    [[ " ${ROUTE_NAMES[*]} " == *" $route "* ]] || die "RL_SAME_AZ entry '$e': $route is not one of this node's routes (${ROUTE_NAMES[*]})"
    [ -z "${SAME_AZ_SUBNET[$route]:-}" ] || die "RL_SAME_AZ names route $route twice"
    [ -z "${seen_subnet[$subnet]:-}" ] || die "RL_SAME_AZ entry '$e': $subnet is already the pair of ${seen_subnet[$subnet]} (one same-AZ pair, one SNAT address per subnet)"
    [ -z "${seen_ip[$ip]:-}" ] || die "RL_SAME_AZ entry '$e': $ip is already the address of ${seen_ip[$ip]}"
    SAME_AZ_SUBNET[$route]=$subnet SAME_AZ_IP[$route]=$ip SAME_AZ_EIP[$route]=$eip
    seen_subnet[$subnet]=$route seen_ip[$ip]=$route
  done
fi
if [ -n "$RL_LOG_GROUP" ] && ! [[ $RL_LOG_GROUP =~ ^[A-Za-z0-9._/#-]{1,512}$ ]]; then
  die "RL_LOG_GROUP '$RL_LOG_GROUP' is not a CloudWatch Logs group name (1-512 of A-Z a-z 0-9 . _ / # -)"
fi
if ! [[ $RL_METRICS_NAMESPACE =~ ^[A-Za-z0-9._/#:-]{1,255}$ ]] || [[ $RL_METRICS_NAMESPACE == AWS/* ]]; then
  die "RL_METRICS_NAMESPACE '$RL_METRICS_NAMESPACE' is not a custom CloudWatch namespace (1-255 of A-Z a-z 0-9 . _ / # : -, not AWS/...)"
fi
case $RL_CONSUL_SECURITY in secure | insecure) ;; *) die "RL_CONSUL_SECURITY must be secure or insecure, not '$RL_CONSUL_SECURITY'" ;; esac
if [ "$RL_CONSUL_SECURITY" = secure ]; then
  [ -n "$RL_GOSSIP_KEY_PARAM" ] || die "secure mode: RL_GOSSIP_KEY_PARAM (the gossip key's SSM parameter) is required"
  [ -n "$RL_CA_PARAM" ] || die "secure mode: RL_CA_PARAM (the Consul CA certificate's SSM parameter) is required"
  if [ "$RL_ROLE" = server ]; then
    [ -n "$RL_CA_KEY_PARAM" ] || die "secure mode: RL_CA_KEY_PARAM (the CA key's SSM parameter) is required on a server"
    [ -n "$RL_MANAGEMENT_TOKEN_PARAM" ] || die "secure mode: RL_MANAGEMENT_TOKEN_PARAM is required on a server"
  fi
fi
[ -n "$RL_CONSUL_URL" ] || die "RL_CONSUL_URL is required (s3:// or https://)"
[[ $RL_CONSUL_SHA256 =~ ^[0-9a-f]{64}$ ]] || die "RL_CONSUL_SHA256 must be 64 lowercase hex digits"
if [ -z "${RL_CONSUL_JOIN_TAG_KEY:-}" ] || [ -z "${RL_CONSUL_JOIN_TAG_VALUE:-}" ]; then
  die "RL_CONSUL_JOIN_TAG_KEY and RL_CONSUL_JOIN_TAG_VALUE are required"
fi

NODE_BIN=/usr/bin/node-22
# V8 flags of the agent (NODE_FLAGS in scripts/build-agent.mjs): no optimizing compiler, one GC
# thread; a 20-route agent's RSS about 100 → 83 MiB at the same CPU (docs/benchmarks/footprint.json).
NODE_FLAGS="--lite-mode --single-threaded-gc"
# glibc returns freed blocks of 32 KiB and more to the kernel (AGENT_ENV in scripts/build-agent.mjs):
# what V8 frees after compiling stops counting in the RSS (20 routes: 83.6 → 69.2 MiB).
AGENT_MALLOC_TUNABLES="glibc.malloc.mmap_threshold=32768"
CONSUL_BIN=/usr/local/bin/consul
RL_PREFIX=/opt/routeleader
RL_CLI=$RL_PREFIX/current/dist/agent/cli.js
RL_CONFIG=/etc/routeleader/routeleader.yaml
EMF_FILE=/var/log/routeleader/emf.log
CWAGENT_CONFIG=/etc/routeleader/cloudwatch-agent.json
# amazon-cloudwatch-agent-ctl (the package's) lives here.
PATH=$PATH:/opt/aws/amazon-cloudwatch-agent/bin
RESTART=()   # units whose files changed in this run

# put_file PATH MODE OWNER CONTENT: writes CONTENT (plus a newline) to $ROOT/PATH only when it
# differs; records the path in CHANGED so the caller knows what to restart.
CHANGED=()
put_file() {
  local path=$ROOT$1 mode=$2 owner=$3 content=$4 tmp
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "$path.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "${mode#0}" ]; then
    rm -f "$tmp"
    return 0
  fi
  chown "$owner" "$tmp"
  mv -f "$tmp" "$path"
  CHANGED+=("$1")
  log "wrote $1"
}
changed() { # changed PATH...: true when any PATH was written by this run
  local p c
  for p in "$@"; do for c in "${CHANGED[@]}"; do [ "$p" = "$c" ] && return 0; done; done
  return 1
}

# ---------------------------------------------------------------- instance identity (IMDSv2)
IMDS_TOKEN=$(curl -fsS --max-time 2 --retry 10 --retry-delay 1 --retry-connrefused -X PUT \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$RL_IMDS_ENDPOINT/latest/api/token")
imds() { curl -fsS --max-time 2 --retry 5 --retry-delay 1 -H "X-aws-ec2-metadata-token: $IMDS_TOKEN" "$RL_IMDS_ENDPOINT/latest/meta-data/$1"; }
INSTANCE_ID=$(imds instance-id)
REGION=$(imds placement/region)
PRIVATE_IP=$(imds local-ipv4)
log "instance $INSTANCE_ID ($PRIVATE_IP) in $REGION, role $RL_ROLE, cluster $RL_CLUSTER"
# Same-AZ mode: this node is a member of a pair when one of RL_SAME_AZ's subnets is its own.
SNAT_IP=""
SNAT_ROUTE=""
if [ ${#SAME_AZ_SUBNET[@]} -gt 0 ]; then
  MAC=$(imds mac)
  SUBNET=$(imds "network/interfaces/macs/$MAC/subnet-id")
  for r in "${!SAME_AZ_SUBNET[@]}"; do
    if [ "${SAME_AZ_SUBNET[$r]}" = "$SUBNET" ]; then SNAT_IP=${SAME_AZ_IP[$r]} SNAT_ROUTE=$r; fi
  done
  if [ -n "$SNAT_IP" ]; then
    INTERFACE=""
    for d in "$ROOT"/sys/class/net/*; do
      [ "$(cat "$d/address" 2>/dev/null || true)" = "$MAC" ] && INTERFACE=$(basename "$d")
    done
    [ -n "$INTERFACE" ] || die "same-AZ mode: no network interface with MAC $MAC under /sys/class/net"
    log "same-AZ pair of $SNAT_ROUTE in $SUBNET: SNAT to $SNAT_IP, conntrackd over $INTERFACE"
  else
    log "same-AZ mode: $SUBNET holds no pair (RL_SAME_AZ): MASQUERADE to $PRIVATE_IP"
  fi
fi

# ---------------------------------------------------------------- packages (the distribution's, signed)
packages=()
[ "$RL_ROLE" = nat ] && packages+=(nodejs22 iptables-nft)
# conntrackd and conntrack (GPL-2), from the distribution's signed repository (in Amazon Linux since
# 2022.0.20220728: amazonlinux/amazon-linux-2023#55).
[ -n "$SNAT_IP" ] && packages+=(conntrack-tools)
# The log shipper: the CloudWatch agent and logrotate, both the distribution's signed packages
# (amazon-cloudwatch-agent is in Amazon Linux's repositories since 2022.0.20220728: amazonlinux/amazon-linux-2023#132).
[ "$RL_ROLE" = nat ] && [ -n "$RL_LOG_GROUP" ] && packages+=(amazon-cloudwatch-agent logrotate)
missing=()
for p in "${packages[@]}"; do rpm -q --quiet "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  dnf install -y --setopt=install_weak_deps=False "${missing[@]}"
fi

# ---------------------------------------------------------------- Consul binary (verified download)
# fetch_verified URL SHA256 FILE: downloads URL to FILE; on a checksum mismatch deletes it and dies.
fetch_verified() {
  case $1 in
    s3://*) aws s3 cp --only-show-errors --region "$REGION" "$1" "$3" || die "download of $1 failed" ;;
    https://*) curl -fsSL --proto '=https' --retry 5 --max-time 600 -o "$3" "$1" || die "download of $1 failed" ;;
    *) die "$1: only s3:// and https:// locations are accepted" ;;
  esac
  local got
  got=$(sha256sum "$3" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    rm -f "$3"
    die "sha256 mismatch for $1: expected $2, got $got; nothing installed"
  fi
}
consul_marker=/var/lib/routeleader/consul.sha256
if [ ! -x "$ROOT$CONSUL_BIN" ] || [ "$(cat "$ROOT$consul_marker" 2>/dev/null || true)" != "$RL_CONSUL_SHA256" ]; then
  mkdir -p "$ROOT/var/tmp"
  work=$(mktemp -d "$ROOT/var/tmp/consul.XXXXXX")
  fetch_verified "$RL_CONSUL_URL" "$RL_CONSUL_SHA256" "$work/download"
  if [[ $RL_CONSUL_URL == *.zip ]]; then # HashiCorp's release zip; python3 is always on AL2023
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("consul"))' "$work/download" >"$work/consul"
  else
    mv "$work/download" "$work/consul"
  fi
  chmod 0755 "$work/consul"
  mkdir -p "$(dirname "$ROOT$CONSUL_BIN")"
  mv -f "$work/consul" "$ROOT$CONSUL_BIN"
  rm -rf "$work"
  put_file "$consul_marker" 0644 root:root "$RL_CONSUL_SHA256"
  log "installed Consul $RL_CONSUL_SHA256 from $RL_CONSUL_URL"
fi

ensure_user() { # ensure_user NAME HOME
  getent passwd "$1" >/dev/null || useradd --system --user-group --home-dir "$2" --shell /sbin/nologin "$1"
}
ensure_user consul /opt/consul
if [ ! -d "$ROOT/opt/consul" ]; then
  mkdir -p "$ROOT/opt/consul"
  chown consul:consul "$ROOT/opt/consul"
fi

# ---------------------------------------------------------------- secrets (SSM SecureString)
ssm_secret() { aws ssm get-parameter --region "$REGION" --with-decryption --name "$1" --query Parameter.Value --output text; }
GOSSIP_KEY=""
ACL_TOKEN=""
MANAGEMENT_TOKEN=""
TLS_DIR=/etc/consul.d/tls
[ -z "$RL_GOSSIP_KEY_PARAM" ] || GOSSIP_KEY=$(ssm_secret "$RL_GOSSIP_KEY_PARAM")
[ -z "$RL_ACL_TOKEN_PARAM" ] || ACL_TOKEN=$(ssm_secret "$RL_ACL_TOKEN_PARAM")
if [ "$RL_CONSUL_SECURITY" = secure ]; then
  put_file "$TLS_DIR/ca.pem" 0644 root:root "$(ssm_secret "$RL_CA_PARAM")"
  if [ "$RL_ROLE" = server ]; then
    # The management token and the CA key stay on the servers (root only).
    MANAGEMENT_TOKEN=$(ssm_secret "$RL_MANAGEMENT_TOKEN_PARAM")
    ACL_TOKEN=$MANAGEMENT_TOKEN
    put_file /etc/consul.d/management-token 0600 root:root "$MANAGEMENT_TOKEN"
    put_file "$TLS_DIR/ca-key.pem" 0600 root:root "$(ssm_secret "$RL_CA_KEY_PARAM")"
    if [ ! -f "$ROOT$TLS_DIR/server.pem" ] || changed "$TLS_DIR/ca.pem" "$TLS_DIR/ca-key.pem"; then
      work=$(mktemp -d "$ROOT/var/tmp/consul-tls.XXXXXX")
      (cd "$work" && "$ROOT$CONSUL_BIN" tls cert create -server -dc "$RL_CONSUL_DATACENTER" -days 1825 \
        -ca "$ROOT$TLS_DIR/ca.pem" -key "$ROOT$TLS_DIR/ca-key.pem" -additional-ipaddress "$PRIVATE_IP" >/dev/null)
      put_file "$TLS_DIR/server.pem" 0644 root:root "$(cat "$work/$RL_CONSUL_DATACENTER-server-consul-0.pem")"
      put_file "$TLS_DIR/server-key.pem" 0640 root:consul "$(cat "$work/$RL_CONSUL_DATACENTER-server-consul-0-key.pem")"
      rm -rf "$work"
    fi
  elif [ -n "$RL_ACL_TOKEN_PARAM" ]; then
    # existing mode: the operator's routeleader token; the RPC certificate by auto_encrypt. The
    # HTTPS listener on loopback needs one this node can verify: auto_encrypt's is signed by the
    # servers' Connect CA (and renewed every few days), and the parameters' CA key stays with the
    # operator. So a CA made here, for this node's loopback only, signs one certificate (127.0.0.1,
    # localhost) and its key is deleted at once: nothing else can ever be signed with it.
    if [ ! -f "$ROOT$TLS_DIR/loopback.pem" ]; then
      mkdir -p "$ROOT/var/tmp"
      work=$(mktemp -d "$ROOT/var/tmp/consul-tls.XXXXXX")
      (cd "$work" && "$ROOT$CONSUL_BIN" tls ca create -days 3650 -common-name "routeleader loopback CA $INSTANCE_ID" >/dev/null &&
        "$ROOT$CONSUL_BIN" tls cert create -client -dc "$RL_CONSUL_DATACENTER" -days 3650 \
          -ca consul-agent-ca.pem -key consul-agent-ca-key.pem >/dev/null)
      put_file "$TLS_DIR/loopback-ca.pem" 0644 root:root "$(cat "$work/consul-agent-ca.pem")"
      put_file "$TLS_DIR/loopback.pem" 0644 root:root "$(cat "$work/$RL_CONSUL_DATACENTER-client-consul-0.pem")"
      put_file "$TLS_DIR/loopback-key.pem" 0640 root:consul "$(cat "$work/$RL_CONSUL_DATACENTER-client-consul-0-key.pem")"
      rm -rf "$work"
    fi
  else
    # This node's own token and client certificate, made by the servers' leader
    # (node-credentials.sh) once it sees this instance; the management token never comes here.
    creds=/routeleader/$RL_CLUSTER/nodes/$INSTANCE_ID
    deadline=$((SECONDS + RL_CREDENTIALS_TIMEOUT))
    until ACL_TOKEN=$(ssm_secret "$creds/token" 2>/dev/null); do
      [ "$SECONDS" -lt "$deadline" ] || die "no Consul credentials in SSM $creds/ after $RL_CREDENTIALS_TIMEOUT s (made by the Consul servers' leader)"
      sleep 3
    done
    put_file "$TLS_DIR/client.pem" 0644 root:root "$(ssm_secret "$creds/cert")"
    put_file "$TLS_DIR/client-key.pem" 0640 root:consul "$(ssm_secret "$creds/key")"
  fi
fi

# ---------------------------------------------------------------- Consul agent
join="provider=aws region=$REGION tag_key=$RL_CONSUL_JOIN_TAG_KEY tag_value=$RL_CONSUL_JOIN_TAG_VALUE"
consul_hcl="# Written by routeleader bootstrap (scripts/bootstrap.sh); a re-run rewrites it.
datacenter = \"$RL_CONSUL_DATACENTER\"
node_name = \"$INSTANCE_ID\"
data_dir = \"/opt/consul\"
bind_addr = \"$PRIVATE_IP\"
advertise_addr = \"$PRIVATE_IP\"
client_addr = \"127.0.0.1\"
retry_join = [\"$join\"]
# An agent restart must not leave the cluster: that would release every lock it holds.
leave_on_terminate = false
skip_leave_on_interrupt = true
disable_update_check = true
log_level = \"INFO\""
if [ "$RL_ROLE" = server ]; then
  consul_hcl+="
server = true
bootstrap_expect = $RL_CONSUL_SERVERS
ui_config {
  enabled = true
}
# A replaced server (leave_on_terminate = false) is removed once its successor is healthy, so a
# dead server never counts against the quorum for long.
autopilot {
  cleanup_dead_servers = true
}
performance {
  raft_multiplier = 1
}"
  [ "$RL_CONSUL_SECURITY" = secure ] && consul_hcl+="
# NAT clients of an existing-mode stack may ask these servers for certificates.
auto_encrypt {
  allow_tls = true
}"
else
  consul_hcl+="
server = false"
fi
if [ "$RL_PROFILE" = fast ]; then
  consul_hcl+="
# gossip profile fast: node death detected in about 1.5 s instead of about 4 s (more false
# positives on a noisy network).
gossip_lan {
  probe_interval = \"500ms\"
  probe_timeout = \"250ms\"
  suspicion_mult = 3
}"
fi
[ -z "$GOSSIP_KEY" ] || consul_hcl+="
encrypt = \"$GOSSIP_KEY\""
if [ "$RL_CONSUL_SECURITY" = secure ] && [ "$RL_ROLE" = nat ] && [ -n "$RL_ACL_TOKEN_PARAM" ]; then
  consul_hcl+="
# secure, existing Consul: TLS for RPC with a certificate from the servers (auto_encrypt), the
# servers verified against the CA parameter; the HTTP API over HTTPS on loopback only, with the
# certificate of this node's loopback CA.
ports {
  http = -1
  https = 8501
}
tls {
  defaults {
    ca_file = \"$TLS_DIR/ca.pem\"
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
  https {
    ca_file = \"$TLS_DIR/loopback-ca.pem\"
    cert_file = \"$TLS_DIR/loopback.pem\"
    key_file = \"$TLS_DIR/loopback-key.pem\"
    verify_incoming = false
  }
}
auto_encrypt {
  tls = true
}"
elif [ "$RL_CONSUL_SECURITY" = secure ]; then
  if [ "$RL_ROLE" = server ]; then cert=server; else cert=client; fi
  consul_hcl+="
# secure mode: TLS for RPC (both ends verified), the HTTP API over HTTPS on loopback only.
ports {
  http = -1
  https = 8501
}
tls {
  defaults {
    ca_file = \"$TLS_DIR/ca.pem\"
    cert_file = \"$TLS_DIR/$cert.pem\"
    key_file = \"$TLS_DIR/$cert-key.pem\"
    verify_outgoing = true
  }
  internal_rpc {
    verify_incoming = true
    verify_server_hostname = true
  }
  https {
    verify_incoming = false
  }
}"
fi
if [ -n "$ACL_TOKEN" ]; then
  consul_hcl+="
acl {
  enabled = true
  default_policy = \"deny\"
  enable_token_persistence = true
  tokens {"
  [ "$RL_ROLE" = server ] && consul_hcl+="
    initial_management = \"$ACL_TOKEN\""
  consul_hcl+="
    agent = \"$ACL_TOKEN\"
  }
}"
fi
put_file /etc/consul.d/consul.hcl 0640 root:consul "$consul_hcl"

put_file /etc/systemd/system/consul.service 0644 root:root "[Unit]
Description=Consul agent ($RL_ROLE) for routeleader
Documentation=https://developer.hashicorp.com/consul/docs
Wants=network-online.target
After=network-online.target

[Service]
User=consul
Group=consul
ExecStart=$CONSUL_BIN agent -config-dir=/etc/consul.d
ExecReload=/bin/kill -HUP \$MAINPID
# SIGTERM without a leave (leave_on_terminate = false): held locks survive a restart.
KillSignal=SIGTERM
KillMode=process
Restart=always
RestartSec=2
LimitNOFILE=65536
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=multi-user.target"
if changed /etc/consul.d/consul.hcl /etc/systemd/system/consul.service "$consul_marker" "$TLS_DIR/server.pem" "$TLS_DIR/client.pem" "$TLS_DIR/loopback.pem"; then RESTART+=(consul.service); fi

# ---------------------------------------------------------------- servers: NAT node credentials
if [ "$RL_ROLE" = server ] && [ "$RL_CONSUL_SECURITY" = secure ]; then
  [ -f "$ROOT$RL_RELEASE_DIR/node-credentials.sh" ] || die "RL_RELEASE_DIR must name an extracted release (no node-credentials.sh in '$RL_RELEASE_DIR')"
  put_file /etc/routeleader/credentials.env 0600 root:root "RL_CLUSTER=$RL_CLUSTER
REGION=$REGION
RL_CONSUL_DATACENTER=$RL_CONSUL_DATACENTER
PRIVATE_IP=$PRIVATE_IP
RL_POLICY_FILE=$RL_RELEASE_DIR/consul-acl-policy.hcl"
  put_file /etc/systemd/system/routeleader-credentials.service 0644 root:root "[Unit]
Description=routeleader: a Consul token and client certificate for each new NAT node (leader only)
After=consul.service

[Service]
Type=oneshot
ExecStart=/bin/bash $RL_RELEASE_DIR/node-credentials.sh
SyslogIdentifier=routeleader-credentials"
  put_file /etc/systemd/system/routeleader-credentials.timer 0644 root:root "[Unit]
Description=routeleader node credentials every 10 s

[Timer]
OnBootSec=20s
OnUnitActiveSec=10s
AccuracySec=1s

[Install]
WantedBy=timers.target"
fi

# ---------------------------------------------------------------- NAT data plane + routeleader
if [ "$RL_ROLE" = nat ]; then
  put_file /etc/sysctl.d/90-routeleader-nat.conf 0644 root:root "# routeleader NAT node: forward IPv4, send no ICMP redirects.
net.ipv4.ip_forward = 1
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0"
  if changed /etc/sysctl.d/90-routeleader-nat.conf; then sysctl -p /etc/sysctl.d/90-routeleader-nat.conf; fi

  # Same-AZ pair: every member SNATs to the pair's secondary IP (the holder has it, with the
  # route's EIP), so a connection keeps its public address across a takeover in the pair.
  if [ -n "$SNAT_IP" ]; then
    masq=(POSTROUTING -s "$RL_VPC_CIDR" ! -d "$RL_VPC_CIDR" -j SNAT --to-source "$SNAT_IP")
    what="SNAT to $SNAT_IP"
  else
    masq=(POSTROUTING -s "$RL_VPC_CIDR" ! -d "$RL_VPC_CIDR" -j MASQUERADE)
    what=MASQUERADE
  fi
  iptables -t nat -C "${masq[@]}" 2>/dev/null || iptables -t nat -A "${masq[@]}"
  strict=""
  if [ -n "$SNAT_IP" ]; then
    # Only synced state carries a connection to the new holder, never a mid-stream guess (the
    # key exists once iptables' nat table loaded nf_conntrack, hence a file of its own).
    put_file /etc/sysctl.d/91-routeleader-same-az.conf 0644 root:root "# routeleader same-AZ pair: strict TCP tracking (conntrackd carries the state).
net.netfilter.nf_conntrack_tcp_loose = 0"
    if changed /etc/sysctl.d/91-routeleader-same-az.conf; then sysctl -p /etc/sysctl.d/91-routeleader-same-az.conf; fi
    strict="
ExecStart=/usr/sbin/sysctl -p /etc/sysctl.d/91-routeleader-same-az.conf"
  fi
  # The same rule at every boot, before routeleader starts.
  put_file /etc/systemd/system/routeleader-nat.service 0644 root:root "[Unit]
Description=routeleader NAT data plane (IPv4 forwarding, $what for $RL_VPC_CIDR)
Before=routeleader.service
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/sysctl -p /etc/sysctl.d/90-routeleader-nat.conf
ExecStart=/bin/sh -c 'iptables -t nat -C ${masq[*]} 2>/dev/null || iptables -t nat -A ${masq[*]}'$strict

[Install]
WantedBy=multi-user.target"

  if [ -n "$SNAT_IP" ]; then
    put_file /etc/routeleader/same-az.env 0644 root:root "RL_CLUSTER=$RL_CLUSTER
REGION=$REGION
SUBNET=$SUBNET
INSTANCE_ID=$INSTANCE_ID
PRIVATE_IP=$PRIVATE_IP
INTERFACE=$INTERFACE"
    # conntrackd runs once the peer is known (conntrackd-sync.sh refresh writes its config).
    put_file /etc/systemd/system/routeleader-conntrackd.service 0644 root:root "[Unit]
Description=routeleader same-AZ pair: conntrackd syncs connection state with the peer NAT
After=routeleader-nat.service
Before=routeleader.service
ConditionPathExists=/etc/routeleader/conntrackd.conf

[Service]
ExecStart=/usr/sbin/conntrackd -C /etc/routeleader/conntrackd.conf
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target"
    put_file /etc/systemd/system/routeleader-conntrackd-peer.service 0644 root:root "[Unit]
Description=routeleader same-AZ pair: find the peer NAT and point conntrackd at it
After=network-online.target routeleader-nat.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/bash $RL_RELEASE_DIR/conntrackd-sync.sh refresh
SyslogIdentifier=routeleader-conntrackd"
    put_file /etc/systemd/system/routeleader-conntrackd-peer.timer 0644 root:root "[Unit]
Description=routeleader same-AZ pair: look for the peer NAT every 30 s

[Timer]
OnBootSec=5s
OnUnitActiveSec=30s
AccuracySec=1s

[Install]
WantedBy=timers.target"
  fi

  ensure_user routeleader "$RL_PREFIX"
  # The verified release the user data extracted; "current" points at it (root-owned, read-only
  # for the agent).
  release_changed=""
  if [ "$(readlink "$ROOT$RL_PREFIX/current" 2>/dev/null || true)" != "$RL_RELEASE_DIR" ]; then
    ln -sfn "$RL_RELEASE_DIR" "$ROOT$RL_PREFIX/current"
    release_changed=1
    log "routeleader release: $RL_RELEASE_DIR"
  fi

  same_az_lines() { # same_az_lines ROUTE: the route's eip and sameAz lines, if RL_SAME_AZ names it
    [ -n "${SAME_AZ_SUBNET[$1]:-}" ] || return 0
    printf '\n    eip: %s\n    sameAz: { subnet: %s, privateIp: %s }' "${SAME_AZ_EIP[$1]}" "${SAME_AZ_SUBNET[$1]}" "${SAME_AZ_IP[$1]}"
  }
  if [ -n "$RL_ROUTE_TABLE_IDS" ]; then
    routes="
  # One lock per table: each table has its own holder, preferably in the table's AZ."
    IFS=, read -r -a tables <<<"$RL_ROUTE_TABLE_IDS"
    for t in "${tables[@]}"; do
      t=${t//[[:space:]]/}
      [ -n "$t" ] || continue
      routes+="
  - name: nat-$t
    table: { id: $t }
    destination: $RL_DESTINATION
    checks: [egress, forwarding]$(same_az_lines "nat-$t")"
    done
  else
    routes="
  # Every table with this tag shares one lock (one holder); list ids for per-AZ holders.
  - name: nat-default
    table: { tags: { \"$RL_ROUTE_TABLE_TAG_KEY\": \"$RL_ROUTE_TABLE_TAG_VALUE\" } }
    destination: $RL_DESTINATION
    checks: [egress, forwarding]
    preferredAz: none$(same_az_lines nat-default)"
  fi
  consul_address=http://127.0.0.1:8500
  ca_line=""
  if [ "$RL_CONSUL_SECURITY" = secure ]; then
    consul_address=https://127.0.0.1:8501
    if [ -n "$RL_ACL_TOKEN_PARAM" ]; then ca=$TLS_DIR/loopback-ca.pem; else ca=$TLS_DIR/ca.pem; fi
    ca_line="
  caFile: $ca"
  fi
  token_line=""
  if [ -n "$ACL_TOKEN" ]; then
    put_file /etc/routeleader/consul-token 0600 routeleader:routeleader "$ACL_TOKEN"
    token_line="
  tokenFile: /etc/routeleader/consul-token"
  fi
  # The egress check passes when any of its hosts answers: no single public address to depend on.
  check_hosts=""
  IFS=, read -r -a hosts <<<"$RL_CHECK_HOST"
  for h in "${hosts[@]}"; do
    h=${h//[[:space:]]/}
    [ -n "$h" ] && check_hosts+="${check_hosts:+, }\"$h\""
  done
  [ -n "$check_hosts" ] || die "RL_CHECK_HOST names no host"
  observe_line=""
  [ -z "$RL_LOG_GROUP" ] || observe_line="
observe:
  cloudwatch:
    # EMF lines to a file the CloudWatch agent ships to $RL_LOG_GROUP, where they become metrics.
    emf: true
    namespace: \"$RL_METRICS_NAMESPACE\"
    output: $EMF_FILE"
  lifecycle_line=""
  [ -z "$RL_LIFECYCLE_HOOK" ] || lifecycle_line="
lifecycle:
  # Scale-in: release every route, then CompleteLifecycleAction(CONTINUE) on this hook.
  hookName: $RL_LIFECYCLE_HOOK"
  put_file "$RL_CONFIG" 0644 root:root "# Written by routeleader bootstrap (scripts/bootstrap.sh); a re-run rewrites it.
cluster: $RL_CLUSTER
region: $REGION
consul:
  address: $consul_address$ca_line$token_line
election:
  profile: $RL_PROFILE
discovery:
  tags: { \"routeleader:cluster\": \"$RL_CLUSTER\" }
sourceDestCheck: fix
checks:
  egress:
    type: ping
    host: [$check_hosts]
  forwarding:
    type: nat
    # The MASQUERADE rule is owned by routeleader-nat.service (root); reading netfilter would
    # need CAP_NET_ADMIN, which the agent does not get.
    requireMasquerade: false$observe_line
routes:$routes$lifecycle_line"

  agent_after="network-online.target consul.service routeleader-nat.service"
  [ -z "$SNAT_IP" ] || agent_after+=" routeleader-conntrackd.service"
  put_file /etc/systemd/system/routeleader.service 0644 root:root "[Unit]
Description=routeleader: elects the holder of each NAT route through Consul
Documentation=https://github.com/routeleader/routeleader
Wants=network-online.target
After=$agent_after
Requires=routeleader-nat.service
# Crash loop: more than 5 starts in 2 minutes stops the restarts and tells the Auto Scaling
# group this instance is unhealthy, so it is replaced.
StartLimitIntervalSec=120
StartLimitBurst=5
OnFailure=routeleader-unhealthy.service

[Service]
User=routeleader
Group=routeleader
ExecStartPre=$NODE_BIN $RL_CLI validate --config $RL_CONFIG
Environment=GLIBC_TUNABLES=$AGENT_MALLOC_TUNABLES
ExecStart=$NODE_BIN $NODE_FLAGS $RL_CLI run --config $RL_CONFIG
ExecReload=/bin/kill -HUP \$MAINPID
# Only raw ICMP sockets for the ping check; nothing else.
AmbientCapabilities=CAP_NET_RAW
CapabilityBoundingSet=CAP_NET_RAW
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
# /var/log/routeleader, the agent's own (its EMF file when metrics are shipped).
LogsDirectory=routeleader
LogsDirectoryMode=0750
# SIGTERM: release every held route first, then exit.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=1
StandardOutput=journal
StandardError=journal
SyslogIdentifier=routeleader

[Install]
WantedBy=multi-user.target"
  put_file /etc/systemd/system/routeleader-unhealthy.service 0644 root:root "[Unit]
Description=routeleader crash loop: mark this instance unhealthy in its Auto Scaling group

[Service]
Type=oneshot
ExecStart=/usr/bin/aws autoscaling set-instance-health --region $REGION --instance-id $INSTANCE_ID --health-status Unhealthy --no-should-respect-grace-period"
  if [ -n "$RL_LOG_GROUP" ]; then
    # The CloudWatch agent tails the EMF file into the stack's log group, one stream per instance;
    # CloudWatch Logs turns each EMF line into metrics. No metrics section: it sends nothing else.
    put_file "$CWAGENT_CONFIG" 0644 root:root "{
  \"agent\": { \"region\": \"$REGION\" },
  \"logs\": {
    \"logs_collected\": {
      \"files\": {
        \"collect_list\": [
          {
            \"file_path\": \"$EMF_FILE\",
            \"log_group_name\": \"$RL_LOG_GROUP\",
            \"log_stream_name\": \"{instance_id}\",
            \"timezone\": \"UTC\"
          }
        ]
      }
    },
    \"force_flush_interval\": 15
  }
}"
    # The agent reopens the file for every line, so rotation by renaming loses nothing.
    put_file /etc/logrotate.d/routeleader 0644 root:root "$EMF_FILE {
    su routeleader routeleader
    daily
    maxsize 20M
    rotate 3
    missingok
    notifempty
    compress
    delaycompress
    create 0640 routeleader routeleader
}"
  fi
  if changed /etc/systemd/system/routeleader-nat.service; then RESTART+=(routeleader-nat.service); fi
  if changed /etc/systemd/system/routeleader-conntrackd.service; then RESTART+=(routeleader-conntrackd.service); fi
  if [ -n "$release_changed" ] || changed "$RL_CONFIG" /etc/routeleader/consul-token /etc/systemd/system/routeleader.service; then
    RESTART+=(routeleader.service)
  fi
fi

# ---------------------------------------------------------------- start
units=(consul.service)
[ "$RL_ROLE" = server ] && [ "$RL_CONSUL_SECURITY" = secure ] && units+=(routeleader-credentials.timer)
[ "$RL_ROLE" = nat ] && units+=(routeleader-nat.service)
[ "$RL_ROLE" = nat ] && [ -n "$SNAT_IP" ] && units+=(routeleader-conntrackd.service routeleader-conntrackd-peer.timer)
[ "$RL_ROLE" = nat ] && units+=(routeleader.service)
if [ ${#CHANGED[@]} -gt 0 ]; then systemctl daemon-reload; fi
for u in "${units[@]}"; do
  systemctl is-enabled --quiet "$u" || systemctl enable "$u"
done
for u in "${units[@]}"; do
  if [ "$u" = routeleader.service ] && [ -n "$SNAT_IP" ]; then
    # Same-AZ pair: conntrackd syncing with the peer before the agent may take the route.
    bash "$ROOT$RL_RELEASE_DIR/conntrackd-sync.sh" refresh
  fi
  if ! systemctl is-active --quiet "$u"; then
    systemctl start "$u"
  elif [ ${#RESTART[@]} -gt 0 ] && [[ " ${RESTART[*]} " == *" $u "* ]]; then
    systemctl restart "$u"
  fi
done
# The log shipper: fetch-config translates and validates the JSON, then (-s) enables and
# (re)starts amazon-cloudwatch-agent.service.
if [ "$RL_ROLE" = nat ] && [ -n "$RL_LOG_GROUP" ]; then
  if changed "$CWAGENT_CONFIG" || ! systemctl is-active --quiet amazon-cloudwatch-agent.service; then
    amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -c "file:$CWAGENT_CONFIG" -s
    RESTART+=(amazon-cloudwatch-agent.service)
  fi
fi
log "done: ${#CHANGED[@]} file(s) written, restarted: ${RESTART[*]:-none}"
