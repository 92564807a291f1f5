"""The `aws` CLI of the bootstrap sandboxes, answered by one long-lived process.

Started once per test file (test/support/aws-cli.ts) with moto's Python, which has boto3: the
sandbox's `aws` stub is a thin client that sends its argv and working directory over a Unix
socket (one JSON line) and prints what comes back, so a call costs milliseconds instead of a
boto3 start-up (about 3 s on a loaded 2-core machine). Only the calls the scripts make are
known; anything else exits 255 like an unknown command of the real CLI. Client errors print the
real CLI's message and exit 254.

usage: python aws-cli-server.py SOCKET MOTO_ENDPOINT
"""

import json
import os
import socketserver
import sys

import boto3
import jmespath
from botocore.exceptions import ClientError

SOCKET, ENDPOINT = sys.argv[1], sys.argv[2]
KW = dict(endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
CLIENTS = {name: boto3.client(name, **KW) for name in ("s3", "ssm", "ec2")}

FLAGS = {"--with-decryption", "--no-with-decryption", "--overwrite", "--recursive", "--only-show-errors"}
LISTS = {"--filters", "--names"}


class Usage(Exception):
    pass


def parse(args):
    """CLI options after `service operation`: --flag, --list a b c, --name value; the rest positional."""
    opts, positional, i = {}, [], 0
    while i < len(args):
        a = args[i]
        if a in FLAGS:
            opts[a[2:]] = True
            i += 1
        elif a in LISTS:
            i += 1
            values = []
            while i < len(args) and not args[i].startswith("--"):
                values.append(args[i])
                i += 1
            opts[a[2:]] = values
        elif a.startswith("--"):
            if i + 1 >= len(args):
                raise Usage(f"argument {a}: expected one argument")
            opts[a[2:]] = args[i + 1]
            i += 2
        else:
            positional.append(a)
            i += 1
    return opts, positional


def shorthand(text):
    """Key=a,Value=b → {"Key": "a", "Value": "b"}; Name=x,Values=a,b → {"Name": "x", "Values": ["a", "b"]}."""
    if text.startswith("Name="):
        name, values = text.split(",", 1)
        return {"Name": name[len("Name="):], "Values": values[len("Values="):].split(",")}
    return dict(kv.split("=", 1) for kv in text.split(","))


def render(result, opts):
    if "query" in opts:
        result = jmespath.search(opts["query"], result)
    if opts.get("output") != "text":
        return json.dumps(result, indent=4, default=str) + "\n"
    if isinstance(result, list):
        flat = [str(x) for item in result for x in (item if isinstance(item, list) else [item])]
        return "\t".join(flat) + "\n" if flat else ""
    return "" if result is None else f"{result}\n"


def s3_cp(opts, positional, cwd):
    if len(positional) != 2 or not positional[0].startswith("s3://"):
        raise Usage("s3 cp: only s3://BUCKET/KEY FILE")
    bucket, key = positional[0][len("s3://"):].split("/", 1)
    CLIENTS["s3"].download_file(bucket, key, os.path.join(cwd, positional[1]))
    return {}


def ssm(op, opts):
    c = CLIENTS["ssm"]
    if op == "get-parameter":
        return c.get_parameter(Name=opts["name"], WithDecryption=bool(opts.get("with-decryption")))
    if op == "put-parameter":
        kw = dict(Name=opts["name"], Value=opts["value"], Type=opts.get("type", "String"))
        if opts.get("overwrite"):
            kw["Overwrite"] = True
        if "tags" in opts:
            kw["Tags"] = [shorthand(opts["tags"])]
        return c.put_parameter(**kw)
    if op == "delete-parameter":
        return c.delete_parameter(Name=opts["name"])
    if op == "delete-parameters":
        return c.delete_parameters(Names=opts["names"])
    if op == "get-parameters-by-path":
        pages = c.get_paginator("get_parameters_by_path").paginate(
            Path=opts["path"], Recursive=bool(opts.get("recursive")), WithDecryption=bool(opts.get("with-decryption"))
        )
        return {"Parameters": [p for page in pages for p in page["Parameters"]]}
    raise Usage(f"ssm {op}")


def ec2(op, opts):
    if op == "describe-instances":
        filters = [shorthand(f) for f in opts.get("filters", [])]
        pages = CLIENTS["ec2"].get_paginator("describe_instances").paginate(Filters=filters)
        return {"Reservations": [r for page in pages for r in page["Reservations"]]}
    raise Usage(f"ec2 {op}")


def answer(argv, cwd):
    if len(argv) < 2:
        return 255, "", "usage: aws SERVICE OPERATION\n"
    service, op = argv[0], argv[1]
    try:
        opts, positional = parse(argv[2:])
        if (service, op) == ("s3", "cp"):
            s3_cp(opts, positional, cwd)
            return 0, "", ""
        if service == "ssm":
            return 0, render(ssm(op, opts), opts), ""
        if service == "ec2":
            return 0, render(ec2(op, opts), opts), ""
        raise Usage(f"{service} {op}")
    except ClientError as err:
        e = err.response["Error"]
        return 254, "", f"\nAn error occurred ({e['Code']}) when calling the {err.operation_name} operation: {e['Message']}\n"
    except Usage as err:
        return 255, "", f"aws (test stub): unknown or malformed call: {err}\n"
    except Exception as err:  # noqa: BLE001 - the CLI exits 255 on any other failure
        return 255, "", f"aws (test stub): {type(err).__name__}: {err}\n"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        req = json.loads(self.rfile.readline())
        code, out, err = answer(req["argv"], req["cwd"])
        self.wfile.write(json.dumps({"code": code, "stdout": out, "stderr": err}).encode() + b"\n")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


with Server(SOCKET, Handler) as server:
    print(f"listening {SOCKET}", flush=True)
    server.serve_forever()
