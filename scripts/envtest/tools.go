//go:build tools

// Package envtest pins the Kubernetes commands that scripts/build-envtest.sh
// builds, so that `go mod tidy` in the generated wrapper module records every
// module they need. The build tag keeps it out of any real build.
package envtest

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
