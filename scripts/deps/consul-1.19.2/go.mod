// Opt-in only (ROUTELEADER_CONSUL_VERSION=1.19.2 scripts/install-deps.sh consul), for testing
// against a newer Consul: Consul 1.17 and later, and the sub-module versions pinned below
// (envoyextensions v0.7.3, troubleshoot v0.7.1), are under the Business Source License 1.1,
// not an open-source licence. The default test Consul is scripts/deps/consul/ (v1.16.1, MPL-2.0).
module routeleader/consulbuild

go 1.26

require github.com/hashicorp/consul v1.19.2

// Pin the sub-modules to exactly what consul v1.19.2's own go.mod requires; these tags hold
// the same code as the ./api, ./sdk, ... trees at the v1.19.2 tag (hashicorp/consul#21664).
replace (
	github.com/hashicorp/consul/api => github.com/hashicorp/consul/api v1.29.4
	github.com/hashicorp/consul/envoyextensions => github.com/hashicorp/consul/envoyextensions v0.7.3
	github.com/hashicorp/consul/proto-public => github.com/hashicorp/consul/proto-public v0.6.2
	github.com/hashicorp/consul/sdk => github.com/hashicorp/consul/sdk v0.16.1
	github.com/hashicorp/consul/troubleshoot => github.com/hashicorp/consul/troubleshoot v0.7.1
)

// Copied from consul's go.mod: exclude only takes effect in the main module.
exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
