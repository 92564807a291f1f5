//go:build tools

// Package tools makes github.com/hashicorp/consul an import of this wrapper module, so that
// `go mod tidy` takes the build list from consul's own go.mod. The tag keeps it out of
// every build; install-deps builds the consul main package directly.
package tools

import _ "github.com/hashicorp/consul"
