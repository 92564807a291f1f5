#!/usr/bin/env bash
# `npm run demo [-- --stay]`: a local 3-node routeleader cluster on the emulators (real Consul,
# moto, the EC2 metadata mock) with a live view, a failover and a handover. Installs what it
# needs first when it is missing (npm packages, Consul, the metadata mock, moto).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${ROUTELEADER_CACHE:-$HOME/.cache/routeleader}

installed() {
  [ -x node_modules/.bin/tsx ] && [ -f "$cache/paths.env" ] || return 1
  local var path
  for var in ROUTELEADER_CONSUL_BIN ROUTELEADER_AEMM_BIN ROUTELEADER_MOTO_BIN; do
    path=${!var:-$(sed -n "s/^$var=//p" "$cache/paths.env")}
    [ -n "$path" ] && [ -x "$path" ] || return 1
  done
}

installed || bash scripts/install-deps.sh npm moto aemm consul
exec npx tsx scripts/demo.ts "$@"
