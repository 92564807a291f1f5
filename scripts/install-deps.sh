#!/usr/bin/env bash
# Installs the real components routeleader's tests and demo run against, pinned and cached
# outside the repository by version. Idempotent: a component already in the cache is skipped.
#
#   scripts/install-deps.sh [consul] [aemm] [moto] [npm] [tools]    (no argument: all)
#
# Cache: $ROUTELEADER_CACHE (default ~/.cache/routeleader). Paths are written to
# $ROUTELEADER_CACHE/paths.env for the test support code and the demo.
set -euo pipefail

# The default test Consul: the last MPL-2.0 release (see install_consul).
CONSUL_VERSION=1.16.1
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

# Reads KEY from a wrapper's build.env (KEY=value lines; not sourced).
build_env() { sed -n "s/^$2=//p" "$1/build.env"; }

# The first line of `consul version` ("Consul v1.16.1"). Reads the whole output first:
# `consul version | head -n 1` under pipefail fails whenever consul is still writing when head
# exits (SIGPIPE).
consul_reported() {
  local out
  out=$("$1" version) || die "$1 version failed"
  printf '%s' "${out%%$'\n'*}"
}

# The test Consul. Default: v$CONSUL_VERSION, the last MPL-2.0 release, built from the Go module
# proxy through scripts/deps/consul/. Whatever `consul` is on PATH is never used by itself.
# Opt-ins, for testing against the Consul you run:
#   ROUTELEADER_CONSUL_BIN=/path/to/consul   that binary (Consul >= $CONSUL_MIN), as it is
#   ROUTELEADER_CONSUL_VERSION=1.19.2        build that version through scripts/deps/consul-<version>/
# Consul 1.17 and later are under the Business Source License (not open source).
install_consul() {
  local on_path
  on_path=$(command -v consul 2>/dev/null || true)
  if [ -n "${ROUTELEADER_CONSUL_BIN:-}" ]; then
    [ -z "${ROUTELEADER_CONSUL_VERSION:-}" ] || die "set ROUTELEADER_CONSUL_BIN or ROUTELEADER_CONSUL_VERSION, not both"
    if [ ! -f "$ROUTELEADER_CONSUL_BIN" ] || [ ! -x "$ROUTELEADER_CONSUL_BIN" ]; then
      die "ROUTELEADER_CONSUL_BIN=$ROUTELEADER_CONSUL_BIN is not an executable file"
    fi
    local reported v
    reported=$(consul_reported "$ROUTELEADER_CONSUL_BIN")
    v=$(printf '%s' "$reported" | sed -n 's/^Consul v\([0-9][0-9.]*\).*/\1/p')
    [ -n "$v" ] || die "ROUTELEADER_CONSUL_BIN=$ROUTELEADER_CONSUL_BIN reports '$reported', not a Consul version"
    version_ge "$v" "$CONSUL_MIN" || die "ROUTELEADER_CONSUL_BIN=$ROUTELEADER_CONSUL_BIN is $reported; the tests need Consul >= $CONSUL_MIN"
    # Not written to paths.env: the tests read the variable itself, and a later run without it
    # goes back to the default build.
    log "consul: tests use $reported at $ROUTELEADER_CONSUL_BIN (opt-in ROUTELEADER_CONSUL_BIN; default: v$CONSUL_VERSION)"
    return
  fi

  local version=${ROUTELEADER_CONSUL_VERSION:-$CONSUL_VERSION}
  version=${version#v}
  local wrapper="$repo/scripts/deps/consul" how="default: the last MPL-2.0 release"
  if [ "$version" != "$CONSUL_VERSION" ]; then
    wrapper="$repo/scripts/deps/consul-$version"
    how="opt-in ROUTELEADER_CONSUL_VERSION"
    if version_ge "$version" 1.17; then how+="; Consul 1.17 and later are under the Business Source License, not open source"; fi
    if [ ! -f "$wrapper/build.env" ]; then
      local have="$CONSUL_VERSION (default)" d
      for d in "$repo"/scripts/deps/consul-*/; do [ -f "$d/build.env" ] && have+=", $(build_env "$d" VERSION)"; done
      die "ROUTELEADER_CONSUL_VERSION=$version: no build recipe scripts/deps/consul-$version/ (recipes: $have). Add one like scripts/deps/consul/ (go.mod, go.sum, build.env), or set ROUTELEADER_CONSUL_BIN to a consul binary"
    fi
  fi
  [ "$(build_env "$wrapper" VERSION)" = "$version" ] || die "$wrapper/build.env is not for Consul $version"
  grep -q "^require github.com/hashicorp/consul v$version\$" "$wrapper/go.mod" ||
    die "$wrapper/go.mod does not require github.com/hashicorp/consul v$version"

  local bin="$cache/consul-$version/consul"
  if [ ! -x "$bin" ]; then
    need go "build Consul $version from the Go module proxy" "the Go toolchain, >= 1.22"
    log "consul: building v$version from source through ${wrapper#"$repo"/} (~1,500 packages: 17 min on 2 busy cores with an empty Go build cache; much less with a warm one)"
    local work ldflags
    work=$(mktemp -d)
    cp -R "$wrapper/." "$work/"
    mkdir -p "$(dirname "$bin")"
    go_build_env
    # GOFLAGS from build.env: -mod=readonly for the default wrapper, whose go.mod and go.sum are
    # the complete build list and its hashes (a module missing from go.sum fails the build
    # rather than being looked up).
    GOFLAGS=$(build_env "$wrapper" GOFLAGS)
    export GOFLAGS
    ldflags="-s -w -X github.com/hashicorp/consul/version.GitCommit=$(build_env "$wrapper" GIT_COMMIT) -X github.com/hashicorp/consul/version.BuildDate=$(build_env "$wrapper" BUILD_DATE)"
    with_progress "consul build" "$cache/consul-$version-build.log" \
      bash -c "cd '$work' && go build -v -trimpath -ldflags '$ldflags' -o '$bin.tmp' github.com/hashicorp/consul"
    mv "$bin.tmp" "$bin"
    rm -rf "$work"
  fi
  local reported
  reported=$(consul_reported "$bin")
  [ "$reported" = "Consul v$version" ] || die "built consul reports '$reported', not v$version"
  if [ -n "$on_path" ] && [ "$on_path" != "$bin" ]; then
    log "consul: not using $on_path on PATH ($(consul_reported "$on_path" 2>/dev/null || echo 'version unknown')); to test against it: ROUTELEADER_CONSUL_BIN=$on_path"
  fi
  log "consul: tests use $reported at $bin ($how)"
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
  command -v conntrackd >/dev/null 2>&1 || missing+=(conntrackd) # connection-state sync in the dataplane suite
  command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)   # reads and flushes conntrack tables there
  if [ ${#missing[@]} -gt 0 ]; then
    need apt-get "install ${missing[*]}" "a Debian-based machine"
    log "tools: apt-get install ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then die "installing ${missing[*]} needs root"; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$cache/apt.log" 2>&1 ||
      { tail -n 20 "$cache/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
  fi
  log "tools: ip, shellcheck, iptables, curl, systemd-analyze, sysctl, ping, chromium, keepalived, conntrackd, conntrack present"
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
