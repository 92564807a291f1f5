#!/bin/bash
# Records its name and argv (fields separated by \x1f) and plays the part of a real program.
set -u
name=$(basename "$0")
{ printf '%s' "$name"; printf '\x1f%s' "$@"; printf '\n'; } >>"$SANDBOX_LOG"
state=$SANDBOX_STATE
for f in rpms users enabled active iptables; do : >>"$state/$f"; done
case $name in
  rpm)
    [ "$1" = -q ] || exit 0
    shift; [ "$1" = --quiet ] && shift
    grep -qxF -- "$1" "$state/rpms" ;;
  dnf)
    shift # install
    for a in "$@"; do case $a in -*) ;; *) echo "$a" >>"$state/rpms" ;; esac; done ;;
  getent)
    grep -qxF -- "$2" "$state/users" && echo "$2:x:990:990::/:/sbin/nologin" ;;
  useradd)
    echo "${!#}" >>"$state/users" ;;
  systemctl)
    case $1 in
      is-enabled) grep -qxF -- "${!#}" "$state/enabled" ;;
      is-active) grep -qxF -- "${!#}" "$state/active" ;;
      enable) echo "${!#}" >>"$state/enabled" ;;
      start | restart) echo "${!#}" >>"$state/active" ;;
      *) exit 0 ;;
    esac ;;
  iptables)
    shift 2 # -t nat
    op=$1; shift
    rule="$*"
    case $op in
      -C) grep -qxF -- "$rule" "$state/iptables" ;;
      -A) echo "$rule" >>"$state/iptables" ;;
    esac ;;
  aws)
    case "$1 $2" in
      "cloudformation signal-resource" | "autoscaling set-instance-health") exit 0 ;;
      "ssm "*)
        if [ -z "${SANDBOX_SSM_SHARED:-}" ]; then
          # This sandbox's own parameters (putSsmParameter): get-parameter --name NAME only.
          [ "$2" = get-parameter ] || exit 255
          while [ $# -gt 0 ]; do [ "$1" = --name ] && { cat "$state/ssm/$(printf '%s' "$2" | tr / _)"; exit $?; }; shift; done
          exit 255
        fi ;;
    esac
    # Everything else goes to the long-lived stub of the test (test/support/aws-cli-server.py).
    [ -n "${SANDBOX_AWS_SOCKET:-}" ] || exit 255
    exec python3 -I -c 'import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["SANDBOX_AWS_SOCKET"])
s.sendall(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}).encode() + b"\n")
r = json.loads(s.makefile("rb").readline())
sys.stdout.write(r["stdout"])
sys.stderr.write(r["stderr"])
sys.exit(r["code"])' "$@" ;;
  amazon-cloudwatch-agent-ctl)
    # fetch-config ... -s: the package's script enables and (re)starts the agent's unit.
    case " $* " in *" -s "*) echo amazon-cloudwatch-agent.service >>"$state/enabled"; echo amazon-cloudwatch-agent.service >>"$state/active" ;; esac ;;
  systemd-cat)
    while [ $# -gt 0 ]; do case $1 in -t | -p) shift 2 ;; -*) shift ;; *) break ;; esac; done
    exec "$@" ;;
  *) exit 0 ;;
esac
