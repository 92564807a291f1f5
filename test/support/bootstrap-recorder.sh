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
      "ssm get-parameter" | "ssm put-parameter" | "ec2 describe-instances")
        if [ -n "${SANDBOX_SSM_MOTO:-}" ] || [ "$1" = ec2 ]; then
          # Through boto3 to the sandbox's moto: parameters shared by every sandbox of a launch.
          exec "$SANDBOX_PYTHON" -c 'import os, sys, boto3
args, opts, i = sys.argv[1:], {}, 2
while i < len(args):
    if args[i] == "--filters":
        opts.setdefault("filters", [])
        i += 1
        while i < len(args) and not args[i].startswith("--"):
            name, values = args[i].split(",", 1)
            opts["filters"].append({"Name": name[len("Name="):], "Values": values[len("Values="):].split(",")})
            i += 1
        continue
    if args[i] not in ("--with-decryption", "--overwrite"):
        opts[args[i][2:]] = args[i + 1]
        i += 2
    else:
        opts[args[i][2:]] = ""
        i += 1
kw = dict(endpoint_url=os.environ["SANDBOX_S3_ENDPOINT"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
if args[0] == "ec2":
    res = boto3.client("ec2", **kw).describe_instances(Filters=opts.get("filters", []))
    print("\t".join(i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]))
    sys.exit(0)
ssm = boto3.client("ssm", **kw)
if args[1] == "get-parameter":
    try:
        p = ssm.get_parameter(Name=opts["name"], WithDecryption=True)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        print("An error occurred (ParameterNotFound)", file=sys.stderr)
        sys.exit(254)
    print(p["Value"] if opts.get("query") == "Parameter.Value" else p["Name"])
else:
    tags = [dict(kv.split("=", 1) for kv in opts["tags"].split(","))] if "tags" in opts else []
    ssm.put_parameter(Name=opts["name"], Value=opts["value"], Type=opts["type"], Tags=tags)' "$@"
        fi
        while [ $# -gt 0 ]; do [ "$1" = --name ] && { cat "$state/ssm/$(printf '%s' "$2" | tr / _)"; exit $?; }; shift; done ;;
    esac
    exit 255 ;;
  systemd-cat)
    while [ $# -gt 0 ]; do case $1 in -t | -p) shift 2 ;; -*) shift ;; *) break ;; esac; done
    exec "$@" ;;
  *) exit 0 ;;
esac
