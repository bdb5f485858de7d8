//go:build tools

// Package etcd pins the etcd server that envtest, the demo and the benchmarks run.
package etcd

import _ "go.etcd.io/etcd/server/v3"
