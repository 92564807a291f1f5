"""replace_route.py endpoint table destination instance: one ReplaceRoute, like `aws ec2 replace-route`."""
import sys

from route_write import replace_route

replace_route(*sys.argv[1:5])
