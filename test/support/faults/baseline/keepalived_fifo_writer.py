"""keepalived `notify_fifo_script` of the tuned keepalived contender: started once by keepalived
with the FIFO path as its last argument; its EC2 client is made and warmed (one
DescribeRouteTables) before the first state change, so a takeover costs one ReplaceRoute.
Arguments: claims_log endpoint table destination instance fifo."""
import os
import sys

from route_write import claim

claims, endpoint, table_id, destination, instance_id, fifo = sys.argv[1:7]

# Open the FIFO before the slow part: keepalived drops an event it cannot write (no reader yet),
# and the first MASTER can come within 2 s of the start. Events wait in the pipe meanwhile.
events = open(fifo)

import boto3  # noqa: E402

ec2 = boto3.client(
    "ec2",
    endpoint_url=endpoint,
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
ec2.describe_route_tables(RouteTableIds=[table_id])

while True:
    for line in events:
        # INSTANCE "nat" MASTER 150
        parts = line.split()
        if len(parts) < 3 or parts[0] != "INSTANCE":
            continue
        state = parts[2]
        if state == "MASTER":
            claim(claims, "acquire")
            try:
                ec2.replace_route(RouteTableId=table_id, DestinationCidrBlock=destination, InstanceId=instance_id)
            except Exception as err:  # keepalived keeps running; the next MASTER transition retries
                print(f"replace_route failed: {err}", file=sys.stderr, flush=True)
        else:
            claim(claims, f"release {state}")
    events.close()
    events = open(fifo)
