"""Shared by the baseline scripts: append a claim line, and replace the route the way an
operator's script does it (boto3 against the EC2 endpoint, i.e. moto through the fault proxy)."""
import os
import time


def claim(log_path, kind):
    with open(log_path, "a") as f:
        f.write(f"{int(time.time() * 1000)} {kind}\n")


def replace_route(endpoint, table_id, destination, instance_id):
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ec2.replace_route(RouteTableId=table_id, DestinationCidrBlock=destination, InstanceId=instance_id)
