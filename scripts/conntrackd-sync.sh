#!/usr/bin/env bash
# conntrackd for the same-AZ connection-preserving mode (a route's sameAz): the NATs of one
# subnet keep their connection-tracking tables in sync, so the pair member that takes the
# route's secondary IP already knows every connection the old holder had NATed to it.
# Shipped in the release (routeleader/conntrackd-sync.sh) next to bootstrap.sh.
#
#   conntrackd-sync.sh render LOCAL PEER IFACE   prints the conntrackd.conf that syncs LOCAL with
#                                                PEER over the network interface IFACE
#   conntrackd-sync.sh refresh                   on a NAT node (routeleader-conntrackd-peer.timer):
#                                                finds the peer, rewrites the config when it
#                                                changed and (re)starts routeleader-conntrackd
#
# Mode FTFW, not NOTRACK: FTFW numbers its messages, acknowledges them and resends what was
# lost, and the VPC may drop a UDP datagram; NOTRACK sends each update once. The external cache
# is off: what the peer sends goes straight into this node's kernel table, so a takeover needs no
# commit step (nothing could run one after a power-off, and the agent has no CAP_NET_ADMIN).
# Unicast UDP over the subnet, port 3780 (a VPC has no multicast). The test data plane
# (test/support/dataplane/lab.ts) runs conntrackd with this same rendered file.
#
# render: CT_LOCK, CT_SOCKET and CT_LOG (a file; default: syslog) change the paths for a test that
# runs several daemons on one host.
# refresh: reads /etc/routeleader/same-az.env (written by bootstrap.sh). Sandbox hooks as in
# bootstrap.sh: ROOT prefixes every path, programs come from PATH.
set -euo pipefail
ROOT=${ROOT:-}
CONF=/etc/routeleader/conntrackd.conf
UNIT=routeleader-conntrackd.service

log() { printf 'routeleader-conntrackd: %s\n' "$*" >&2; }
ipv4() { [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256 && BASH_REMATCH[3] < 256 && BASH_REMATCH[4] < 256)); }

render() {
  local local_ip=$1 peer_ip=$2 iface=$3
  ipv4 "$local_ip" || { log "render: LOCAL '$local_ip' is not an IPv4 address"; return 2; }
  ipv4 "$peer_ip" || { log "render: PEER '$peer_ip' is not an IPv4 address"; return 2; }
  [ "$local_ip" != "$peer_ip" ] || { log "render: LOCAL and PEER are both $local_ip"; return 2; }
  [[ $iface =~ ^[A-Za-z0-9._-]{1,15}$ ]] || { log "render: IFACE '$iface' is not a network interface name"; return 2; }
  local logging="  Syslog on
  LogFile off"
  [ -z "${CT_LOG:-}" ] || logging="  Syslog off
  LogFile ${CT_LOG}"
  cat <<EOF
# Written by routeleader (conntrackd-sync.sh): same-AZ connection sync with $peer_ip.
Sync {
  Mode FTFW {
    DisableExternalCache On
    StartupResync on
  }
  UDP {
    IPv4_address $local_ip
    IPv4_Destination_Address $peer_ip
    Port 3780
    Interface $iface
    Checksum on
  }
}
General {
  HashSize 8192
  HashLimit 131072
$logging
  LockFile ${CT_LOCK:-/var/lock/conntrackd.lock}
  UNIX {
    Path ${CT_SOCKET:-/var/run/conntrackd.ctl}
  }
  NetlinkBufferSize 2097152
  NetlinkBufferSizeMaxGrowth 8388608
  Filter From Userspace {
    Protocol Accept {
      TCP
      UDP
    }
    # The nodes' own connections (Consul, AWS APIs, this sync) are not NATed: not synced.
    Address Ignore {
      IPv4_address 127.0.0.1
      IPv4_address $local_ip
      IPv4_address $peer_ip
    }
  }
}
EOF
}

# The other pending or running instance of this cluster in this subnet (the lowest private IP
# if there are several); empty when there is none yet.
find_peer() {
  local listing entry ip n best="" best_n=0 a b c d
  listing=$(aws ec2 describe-instances --region "$REGION" --output text \
    --filters "Name=tag:routeleader:cluster,Values=$RL_CLUSTER" "Name=subnet-id,Values=$SUBNET" \
    "Name=instance-state-name,Values=pending,running" \
    --query "Reservations[].Instances[].join(':', [InstanceId, PrivateIpAddress])")
  for entry in $listing; do
    [ "${entry%%:*}" != "$INSTANCE_ID" ] || continue
    ip=${entry#*:}
    ipv4 "$ip" || continue
    IFS=. read -r a b c d <<<"$ip"
    n=$(((a << 24) + (b << 16) + (c << 8) + d))
    if [ -z "$best" ] || [ "$n" -lt "$best_n" ]; then best=$ip best_n=$n; fi
  done
  printf '%s' "$best"
}

refresh() {
  # shellcheck source=/dev/null
  . "$ROOT/etc/routeleader/same-az.env"
  : "${RL_CLUSTER:?}" "${REGION:?}" "${SUBNET:?}" "${INSTANCE_ID:?}" "${PRIVATE_IP:?}" "${INTERFACE:?}"
  local peer conf tmp
  peer=$(find_peer)
  if [ -z "$peer" ]; then
    log "no other NAT of cluster $RL_CLUSTER in $SUBNET yet: nothing to sync with"
    return 0
  fi
  conf=$(render "$PRIVATE_IP" "$peer" "$INTERFACE")
  if [ -f "$ROOT$CONF" ] && [ "$(cat "$ROOT$CONF")" = "$conf" ]; then
    systemctl is-active --quiet "$UNIT" || systemctl start "$UNIT"
    return 0
  fi
  mkdir -p "$(dirname "$ROOT$CONF")"
  tmp=$(mktemp "$ROOT$CONF.XXXXXX")
  printf '%s\n' "$conf" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$ROOT$CONF"
  log "syncing connection state with $peer (wrote $CONF)"
  systemctl restart "$UNIT"
}

case ${1:-} in
  render) [ $# -eq 4 ] || { log "usage: $0 render LOCAL PEER IFACE"; exit 2; }; render "$2" "$3" "$4" ;;
  refresh) refresh ;;
  *) log "usage: $0 render LOCAL PEER IFACE | refresh"; exit 2 ;;
esac
