module routeleader/aemmbuild

go 1.26

// The module proxy here serves v1.12.0 (v1.13.0 and the version list answer 403), and
// `go install <cmd>@version` looks the command path up as a module first, so build through
// this wrapper instead.
require github.com/aws/amazon-ec2-metadata-mock v1.12.0
