#!/usr/bin/env bash
# raftsman's developer entry point. Installs the system packages building and testing need (when run as
# root; otherwise it names them), keeps cargo's build directory outside the checkout so later runs are
# incremental, then runs one of:
#   up     build and start a local cluster (three replicas, one agent) in ./.raftsman (Ctrl-C stops it)
#   test   rustfmt check, clippy with warnings denied, every test (unit, storage suite, multi-process)
#   bench  the side-by-side benchmark against a three-member etcd 3.4 cluster (and the other suites)
#   bench-docker [PODS [RATE]]  pod startup latency of PODS (100) pods on one Docker node, all at once and at
#                        RATE (2) pods a second, beside the Docker CLI, and the agent's cost
#   plot-soak SAMPLES.csv [OUTPUT.png]  plots what `bench --suite soak` sampled (default output: soak.png)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/raftsman-target}"

# Debian packages: protoc for the gRPC code, libclang for RocksDB's bindings, etcdctl, busybox-static,
# docker-compose and systemd-analyze for the tests, etcd for the benchmark's side-by-side comparison.
ensure_packages() {
  local missing=()
  command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
  ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || missing+=(libclang-dev)
  command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
  if [ "${1:-}" = bench ]; then command -v etcd >/dev/null 2>&1 || missing+=(etcd-server); fi
  # A static busybox: the Docker runtime's tests import it as their workload image (no registry is reachable).
  if [ "${1:-}" = test ]; then
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
    # The compose chaos test drives deploy/compose with it.
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    # The deploy test checks the systemd units with systemd-analyze.
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "raftsman needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The project's Python packages, in a virtualenv of its own: the official Kubernetes client for the conformance
# test, matplotlib for the soak plot. Installs PACKAGE==VERSION unless MODULE imports already.
VENV="$HOME/.cache/raftsman-venv"
ensure_python_package() {
  local module="$1" requirement="$2"
  if ! "$VENV/bin/python" -c "import $module" >/dev/null 2>&1; then
    echo "installing $requirement into $VENV" >&2
    python3 -m venv "$VENV" || { apt-get install -y -qq --no-install-recommends python3-venv >/dev/null && python3 -m venv "$VENV"; }
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"
  fi
}

ensure_python_client() {
  ensure_python_package kubernetes 'kubernetes==37.0.2'
  export RAFTSMAN_TEST_PYTHON="$VENV/bin/python"
}

if [ "${1:-}" = plot-soak ]; then
  [ -n "${2:-}" ] || { echo "usage: deploy/dev.sh plot-soak SAMPLES.csv [OUTPUT.png]" >&2; exit 2; }
  ensure_python_package matplotlib 'matplotlib==3.10.9'
  exec "$VENV/bin/python" deploy/plot-soak.py "$2" "${3:-soak.png}"
fi

command -v cargo >/dev/null 2>&1 || { echo "raftsman needs the Rust toolchain (https://rustup.rs)" >&2; exit 1; }

case "${1:-}" in
  up)
    ensure_packages up
    cargo build --release --bin raftsman
    exec "$CARGO_TARGET_DIR/release/raftsman" up "${@:2}"
    ;;
  test)
    ensure_packages test
    ensure_python_client
    cargo fmt --all -- --check
    cargo clippy --release --all-targets -- -D warnings
    if cargo nextest --version >/dev/null 2>&1; then
      cargo nextest run --release --no-fail-fast "${@:2}"
    else
      cargo test --release --no-fail-fast "${@:2}"
    fi
    ;;
  bench)
    ensure_packages bench
    cargo build --release --bin raftsman
    exec "$CARGO_TARGET_DIR/release/raftsman" bench "${@:2}"
    ;;
  bench-docker)
    # Pod startup latency on one Docker node: three replicas, one agent on the local Docker Engine, ${2:-100}
    # pods of a busybox image imported from Debian's busybox-static (no registry), as a Deployment and then at
    # ${3:-2} pods a second, each beside the Docker CLI (deploy/docker-startup-bench.py).
    ensure_packages test
    ensure_python_client
    cargo build --release --bin raftsman
    bin="$CARGO_TARGET_DIR/release/raftsman"
    dir="$(mktemp -d)"
    pids=()
    cleanup() {
      kill "${pids[@]}" 2>/dev/null || true
      wait 2>/dev/null || true
      ids="$(docker ps -aq --filter label=io.raftsman.node=bench-docker)"
      [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
      rm -rf "$dir"
    }
    trap cleanup EXIT
    if ! docker image inspect raftsman-bench/busybox:1 >/dev/null 2>&1; then
      mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp"
      cp /bin/busybox "$dir/rootfs/bin/"
      for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$dir/rootfs/bin/$applet"
      done
      tar -C "$dir/rootfs" -c . | docker import --change 'ENV PATH=/bin' - raftsman-bench/busybox:1 >/dev/null
    fi
    "$bin" up --data-dir "$dir/cluster" --base-port 24500 --agent none >"$dir/up.log" 2>&1 &
    pids+=($!)
    export KUBECONFIG="$dir/cluster/n1/admin.kubeconfig"
    for _ in $(seq 60); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 1; done
    kubectl get --raw /readyz >/dev/null || { cat "$dir/up.log" >&2; exit 1; }
    "$bin" agent --node-name bench-docker --servers 127.0.0.1:24502 --runtime docker \
      --data-dir "$dir/agent" --kubelet-addr 127.0.0.1:24550 >"$dir/agent.log" 2>&1 &
    pids+=($!)
    until kubectl get node bench-docker >/dev/null 2>&1; do sleep 1; done
    "$RAFTSMAN_TEST_PYTHON" deploy/docker-startup-bench.py "$dir/cluster/n1/admin.kubeconfig" "${pids[1]}" \
      raftsman-bench/busybox:1 "${2:-100}" "${3:-2}"
    ;;
  *)
    echo "usage: deploy/dev.sh up|test|bench [args...] | bench-docker [PODS [RATE]] | plot-soak SAMPLES.csv [OUTPUT.png]" >&2
    exit 2
    ;;
esac
