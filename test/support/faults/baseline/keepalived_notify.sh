#!/bin/sh
# keepalived `notify` script: python claims_log endpoint table destination instance, then
# keepalived's TYPE NAME STATE PRIORITY. The state change is logged before anything slow starts,
# so the claim time is keepalived's; on MASTER the route is replaced with boto3 (as an operator's
# script would with the AWS CLI).
python=$1
claims=$2
state=$9
if [ "$state" = MASTER ]; then
  echo "$(date +%s%3N) acquire" >>"$claims"
  exec "$python" "$(dirname "$0")/replace_route.py" "$3" "$4" "$5" "$6"
fi
echo "$(date +%s%3N) release $state" >>"$claims"
