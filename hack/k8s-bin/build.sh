#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules (nothing else can be
# downloaded here; see shared ENVTEST.md) into a per-user cache keyed by
# version, under a lock so parallel callers build once. Prints the directory.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.37.1}
here=$(cd "$(dirname "$0")" && pwd)
cache=${IMPUSH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/im-push-operator}/k8s/$K8S_VERSION
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -x "$cache/kube-apiserver" ]; then
  echo ">> building kube-apiserver $K8S_VERSION from Go modules (one time; ~7 minutes on 2 cores)" >&2
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  (cd "$here/apiserver" && go build -trimpath -o "$cache/kube-apiserver.tmp" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
fi
if [ ! -x "$cache/etcd" ]; then
  echo ">> building etcd from Go modules (one time; ~1.5 minutes)" >&2
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$cache/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$cache/etcd.tmp" "$cache/etcd"
fi
echo "$cache"
