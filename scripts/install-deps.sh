#!/usr/bin/env bash
# Installs the real components routeleader's tests and demo run against, pinned and cached
# outside the repository by version. Idempotent: a component already in the cache is skipped.
#
#   scripts/install-deps.sh [consul] [aemm] [moto] [npm] [tools]    (no argument: all)
#
# Cache: $ROUTELEADER_CACHE (default ~/.cache/routeleader). Paths are written to
# $ROUTELEADER_CACHE/paths.env for the test support code and the demo.
set -euo pipefail

CONSUL_VERSION=1.19.2
CONSUL_MIN=1.16
AEMM_VERSION=v1.12.0
MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.51.0

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${ROUTELEADER_CACHE:-$HOME/.cache/routeleader}
mkdir -p "$cache"

log() { printf '[deps %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[deps] ERROR: %s\n' "$*" >&2; exit 3; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required to $2 but is not installed (install: $3)"
}

# Runs a long command, printing one progress line every 30 s so a cold build is not silent.
with_progress() {
  local what=$1 logfile=$2; shift 2
  local start=$SECONDS
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$what: $((SECONDS - start)) s, $(grep -c 'downloading' "$logfile" 2>/dev/null || true) modules fetched, $(grep -vc '^go: ' "$logfile" 2>/dev/null || true) packages compiled, last: $(tail -n 1 "$logfile" | cut -c1-80)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$logfile" >&2
    die "$what failed after $((SECONDS - start)) s (full log: $logfile)"
  fi
  log "$what: done in $((SECONDS - start)) s"
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

go_build_env() {
  export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
}

install_consul() {
  local bin="$cache/consul-$CONSUL_VERSION/consul"
  if command -v consul >/dev/null 2>&1; then
    local v
    v=$(consul version | sed -n 's/^Consul v\([0-9.]*\).*/\1/p')
    if [ -n "$v" ] && version_ge "$v" "$CONSUL_MIN"; then
      log "consul: using $(command -v consul) (v$v)"
      echo "ROUTELEADER_CONSUL_BIN=$(command -v consul)" >>"$cache/paths.env.new"
      return
    fi
  fi
  if [ ! -x "$bin" ]; then
    need go "build Consul $CONSUL_VERSION from the Go module proxy" "the Go toolchain, >= 1.22"
    log "consul: building v$CONSUL_VERSION from source (cold: ~5-15 min on 2 cores; ~1,000 packages)"
    local work
    work=$(mktemp -d)
    cp "$repo/scripts/deps/consul/go.mod" "$work/"
    [ -f "$repo/scripts/deps/consul/go.sum" ] && cp "$repo/scripts/deps/consul/go.sum" "$work/"
    go_build_env
    with_progress "consul build" "$cache/consul-build.log" \
      bash -c "cd '$work' && go build -v -trimpath -ldflags '-s -w -X github.com/hashicorp/consul/version.GitCommit=048f1936 -X github.com/hashicorp/consul/version.BuildDate=2024-08-27T16:06:44Z' -o '$bin.tmp' github.com/hashicorp/consul"
    mv "$bin.tmp" "$bin"
    rm -rf "$work"
  fi
  # Read the whole output first: `consul version | head -n 1` under pipefail fails whenever
  # consul is still writing when head exits (SIGPIPE).
  local reported
  reported=$("$bin" version) || die "$bin version failed"
  reported=${reported%%$'\n'*}
  [ "$reported" = "Consul v$CONSUL_VERSION" ] || die "built consul reports '$reported', not v$CONSUL_VERSION"
  log "consul: $reported at $bin"
  echo "ROUTELEADER_CONSUL_BIN=$bin" >>"$cache/paths.env.new"
}

install_aemm() {
  local bin="$cache/aemm-$AEMM_VERSION/ec2-metadata-mock"
  if [ ! -x "$bin" ]; then
    need go "build amazon-ec2-metadata-mock $AEMM_VERSION" "the Go toolchain, >= 1.22"
    log "aemm: building amazon-ec2-metadata-mock $AEMM_VERSION"
    local work
    work=$(mktemp -d)
    cp "$repo/scripts/deps/aemm/go.mod" "$repo/scripts/deps/aemm/go.sum" "$work/"
    go_build_env
    # v1.12.0 keeps its main package in ./cmd (moved to ./cmd/ec2-metadata-mock in v1.13.0).
    with_progress "aemm build" "$cache/aemm-build.log" \
      bash -c "cd '$work' && go build -v -trimpath -o '$bin.tmp' github.com/aws/amazon-ec2-metadata-mock/cmd"
    mv "$bin.tmp" "$bin"
    rm -rf "$work"
  fi
  log "aemm: $("$bin" --version) at $bin"
  echo "ROUTELEADER_AEMM_BIN=$bin" >>"$cache/paths.env.new"
}

install_moto() {
  local venv="$cache/moto-$MOTO_VERSION"
  if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import moto, flask' 2>/dev/null; then
    need python3 "run moto server" "python3 >= 3.9 with venv"
    log "moto: creating venv with moto[server]==$MOTO_VERSION and cfn-lint==$CFN_LINT_VERSION"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    with_progress "moto install" "$cache/moto-install.log" \
      "$venv/bin/pip" install --disable-pip-version-check "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION"
  fi
  "$venv/bin/python" -c 'import moto, flask; print("moto", moto.__version__)' >/dev/null ||
    die "moto is installed in $venv but 'import moto, flask' fails"
  log "moto: $("$venv/bin/python" -c 'import moto; print(moto.__version__)') at $venv"
  echo "ROUTELEADER_MOTO_BIN=$venv/bin/moto_server" >>"$cache/paths.env.new"
  echo "ROUTELEADER_CFN_LINT_BIN=$venv/bin/cfn-lint" >>"$cache/paths.env.new"
}

install_npm() {
  cd "$repo"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm: npm ci"
    npm ci --no-audit --no-fund
  fi
  log "npm: node_modules up to date"
}

# Debian tools for the namespace harness, script linting and the browser test.
install_tools() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v curl >/dev/null 2>&1 || missing+=(curl) # the bootstrap sandbox test reads IMDS with it
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd) # verifies the bootstrap's units
  command -v sysctl >/dev/null 2>&1 || missing+=(procps) # applies the bootstrap's sysctl file in a namespace
  command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v keepalived >/dev/null 2>&1 || missing+=(keepalived)
  if [ ${#missing[@]} -gt 0 ]; then
    need apt-get "install ${missing[*]}" "a Debian-based machine"
    log "tools: apt-get install ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then die "installing ${missing[*]} needs root"; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$cache/apt.log" 2>&1 ||
      { tail -n 20 "$cache/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
  fi
  log "tools: ip, shellcheck, iptables, curl, systemd-analyze, sysctl, ping, chromium, keepalived present"
}

components=("$@")
[ ${#components[@]} -eq 0 ] && components=(npm moto aemm consul tools)
: >"$cache/paths.env.new"
for c in "${components[@]}"; do
  case "$c" in
    consul) install_consul ;;
    aemm) install_aemm ;;
    moto) install_moto ;;
    npm) install_npm ;;
    tools) install_tools ;;
    *) die "unknown component '$c' (expected consul, aemm, moto, npm or tools)" ;;
  esac
done
# Merge with what an earlier partial run recorded.
touch "$cache/paths.env"
sort -s -u -t= -k1,1 "$cache/paths.env.new" "$cache/paths.env" >"$cache/paths.env.tmp"
mv "$cache/paths.env.tmp" "$cache/paths.env"
rm -f "$cache/paths.env.new"
log "paths written to $cache/paths.env"
