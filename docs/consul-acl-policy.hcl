# The Consul ACL policy of the routeleader agent's token: everything it needs, nothing more.
# Replace <cluster> with the routeleader cluster name (the `cluster` setting).
#
# This file is the one copy: README.md and docs/deploy.md point here, and
# test/integration/security.test.ts creates the token its agents run with from this text,
# under ACLs with default_policy = "deny", and proves the agent starts, reads
# /v1/agent/self, joins peers, registers, creates sessions and writes its
# keys with it, and cannot write outside its prefix.

# The local Consul agent: /v1/agent/self (read) and /v1/agent/join (write). Node names are
# instance ids, unknown in advance.
agent_prefix "" {
  policy = "write"
}

# The member list (/v1/agent/members) and the nodes behind /v1/health/service (peer health for
# the AZ preference). Read only: writing its own node (the Consul client agent on a NAT node uses
# this token as its agent token) comes from the node identity each token carries
# (scripts/node-credentials.sh), so a token cannot register or change another node.
node_prefix "" {
  policy = "read"
}

# Register the routeleader service (consul.serviceName, if you changed it) with its TTL checks,
# update and deregister it; read its peers' instances and checks.
service "routeleader" {
  policy = "write"
}

# Sessions bound to the node's checks: create, renew, destroy, read (?consistent); and list
# them all (/v1/session/list: a peer without a live session does not count as healthy).
session_prefix "" {
  policy = "write"
}

# Route locks, failback times and handover requests of this cluster only.
key_prefix "routeleader/<cluster>/" {
  policy = "write"
}

# No operator right: it would also let a stolen token change the gossip keyring and remove Raft
# peers. The force-leave of a terminated NAT node's Consul client is the servers' job
# (scripts/node-credentials.sh, with the management token); an agent refused it carries on.
