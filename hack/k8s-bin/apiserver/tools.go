//go:build tools

// Package apiserver pins the kube-apiserver that envtest, the demo and the
// benchmarks run; it is built from its Go module because nothing else can be
// downloaded on the machines this project runs on.
package apiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
