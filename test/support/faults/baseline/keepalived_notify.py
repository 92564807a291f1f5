"""keepalived `notify` script: logs every VRRP state change; on MASTER replaces the route.
argv: claims_log endpoint table destination instance, then keepalived's TYPE NAME STATE PRIORITY."""
import sys

from route_write import claim, replace_route

claims, endpoint, table, destination, instance = sys.argv[1:6]
state = sys.argv[8] if len(sys.argv) > 8 else "UNKNOWN"
if state == "MASTER":
    claim(claims, "acquire")
    replace_route(endpoint, table, destination, instance)
else:
    claim(claims, f"release {state}")
