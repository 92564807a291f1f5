"""The child a Consul lock runs (`consul lock <prefix> python lock_child.py ...`): it holds the
lock while it runs. It replaces the route, then checks health like keepalived's track_script
(every 1 s, fall 3) and exits when unhealthy, which makes the lock holder release the key; an
unhealthy host that gets the lock (its supervisor restarts `consul lock`) gives it back at once.
argv: claims_log endpoint table destination instance health_file."""
import os
import signal
import sys
import time

from route_write import claim, replace_route

claims, endpoint, table, destination, instance, health_file = sys.argv[1:7]


def on_term(_sig, _frame):
    claim(claims, "release lost")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
if not os.path.exists(health_file):
    sys.exit(0)
claim(claims, "acquire")
replace_route(endpoint, table, destination, instance)
failures = 0
while True:
    time.sleep(1)
    failures = 0 if os.path.exists(health_file) else failures + 1
    if failures >= 3:
        claim(claims, "release unhealthy")
        sys.exit(0)
