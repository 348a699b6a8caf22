#!/usr/bin/env bash
# Builds the local control plane into BIN_DIR (default: <cargo target dir>/cluster/bin):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from k8s.io/kubernetes
# (the release in K8S_VERSION, dependencies pinned by go.mod/go.sum), and govcluster (our
# embedded etcd, fake nodes and process supervisor).
#
# Two stamps skip what did not change: .stamp (the release, go.mod, go.sum and the Go
# version) for the Kubernetes binaries, and .stamp-govcluster (that plus the sources under
# cmd/) for govcluster, so a change to govcluster relinks govcluster alone. Otherwise Go's
# module and build caches (GOMODCACHE, GOCACHE) make a rebuild take seconds. The first,
# cold build takes about 5-10 minutes on 2 cores and prints progress as it goes.
#
# Usage: tests/cluster/build.sh [BIN_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

default_target="${CARGO_TARGET_DIR:-$(cd "$here/../.." && pwd)/target}"
bin_dir="${1:-$default_target/cluster/bin}"
mkdir -p "$bin_dir"

command -v go >/dev/null || { echo "build.sh: the Go toolchain is required (https://go.dev/doc/install, or Debian's golang-go >= 1.26)" >&2; exit 1; }

k8s_version="$(cat K8S_VERSION)"
kube_stamp="$( { echo "$k8s_version"; go version; cat go.mod go.sum; } | sha256sum | cut -d' ' -f1)"
# Every file under cmd/ (name and content), so that an added or renamed file counts too.
govcluster_stamp="$( { echo "$kube_stamp"; find cmd -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)"
kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
fresh() { # fresh STAMP_FILE STAMP BIN...: the stamp matches and every binary is there
  [ -f "$bin_dir/$1" ] && [ "$(cat "$bin_dir/$1")" = "$2" ] || return 1
  local b; for b in "${@:3}"; do [ -x "$bin_dir/$b" ] || return 1; done
}
packages=()
fresh .stamp "$kube_stamp" "${kube_bins[@]}" || packages+=("${kube_bins[@]/#/k8s.io/kubernetes/cmd/}")
fresh .stamp-govcluster "$govcluster_stamp" govcluster || packages+=(./cmd/govcluster)
if [ ${#packages[@]} -eq 0 ]; then
  echo "control plane $k8s_version is up to date in $bin_dir"
  exit 0
fi

# /version must report the real release, not v0.0.0-master.
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "building the local control plane (Kubernetes $k8s_version) into $bin_dir: ${packages[*]##*/}"
echo "  Go caches: GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"
echo "  a cold build takes about 5-10 minutes on 2 cores; a warm one seconds"
start=$(date +%s)
go mod download
# -v names each package as it is compiled: turn that into a progress line every 100 packages.
go build -v -ldflags "$ldflags" -o "$bin_dir/" "${packages[@]}" 2>&1 | awk -v start="$start" '
    /^(go: |#|[^ ]+\.go:)/ { print; fflush(); next }
    { n++; if (n % 100 == 0) { printf "  compiled %d packages (%ds)\n", n, systime() - start; fflush() } }
  '
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || { echo "build.sh: go build failed (exit $status)" >&2; exit "$status"; }
echo "$kube_stamp" >"$bin_dir/.stamp"
echo "$govcluster_stamp" >"$bin_dir/.stamp-govcluster"
echo "control plane built in $(( $(date +%s) - start ))s: $(ls "$bin_dir" | tr '\n' ' ')"
