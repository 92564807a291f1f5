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
      "s3 cp")
        # aws s3 cp [options] s3://BUCKET/KEY FILE: from the sandbox's moto S3, through boto3.
        [ $# -ge 4 ] || exit 255
        src=${*: -2:1} dest=${!#}
        exec "$SANDBOX_PYTHON" -c 'import os, sys, boto3
bucket, key = sys.argv[1][len("s3://"):].split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ["SANDBOX_S3_ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
s3.download_file(bucket, key, sys.argv[2])' "$src" "$dest" ;;
      "cloudformation signal-resource" | "autoscaling set-instance-health") exit 0 ;;
      "ssm get-parameter")
        while [ $# -gt 0 ]; do [ "$1" = --name ] && { cat "$state/ssm/$(printf '%s' "$2" | tr / _)"; exit $?; }; shift; done ;;
    esac
    exit 255 ;;
  systemd-cat)
    while [ $# -gt 0 ]; do case $1 in -t | -p) shift 2 ;; -*) shift ;; *) break ;; esac; done
    exec "$@" ;;
  *) exit 0 ;;
esac
