#!/bin/sh
# Installs raftsman on a machine of the cluster (a control-plane VM or a worker): the binary, the systemd units
# of a replica and of an agent, example settings for both and the procedures. Nothing is started or enabled;
# the settings a replica or an agent runs with are never overwritten.
#
#   deploy/install.sh [--binary PATH] [--root DIR]
#
# --binary PATH  the raftsman binary to install; by default it is built here first (cargo build --release).
# --root DIR     install under DIR instead of / (to stage an image); systemd is then left alone.
set -eu

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

binary=
root=
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

deploy=$(cd "$(dirname "$0")" && pwd)
if [ -z "$binary" ]; then
    (cd "$deploy/.." && cargo build --release --locked --bin raftsman)
    # cargo's target dir, as cargo resolves it from the checkout (CARGO_TARGET_DIR may be relative).
    binary=$(cd "$deploy/.." && cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/raftsman
fi
# The binary must run on this machine before it replaces the one a unit runs.
version=$("$binary" --version) || { echo "install.sh: $binary does not run here" >&2; exit 1; }
case "$version" in
    raftsman\ *) ;;
    *) echo "install.sh: $binary is not raftsman (its --version says: $version)" >&2; exit 1 ;;
esac

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/local/share/doc/raftsman"
# A new file renamed over the old one: a running replica keeps the binary it started with.
install -m 0755 "$binary" "$root/usr/local/bin/.raftsman.new"
mv -f "$root/usr/local/bin/.raftsman.new" "$root/usr/local/bin/raftsman"
install -m 0644 "$deploy/raftsman-server.service" "$deploy/raftsman-agent.service" "$root/etc/systemd/system/"
install -m 0644 "$deploy/PROCEDURES.md" "$root/usr/local/share/doc/raftsman/"
# Settings name keys and tokens: readable by root only.
install -d -m 0700 "$root/etc/raftsman" "$root/etc/raftsman/pki"
install -m 0600 "$deploy/server.toml.example" "$deploy/agent.toml.example" "$root/etc/raftsman/"

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
cat <<DONE
installed $version
next, on a control-plane VM: write /etc/raftsman/server.toml (from server.toml.example) and the files it names
    under /etc/raftsman/pki, then: systemctl enable --now raftsman-server
on a worker: write /etc/raftsman/agent.toml (from agent.toml.example) and /etc/raftsman/node-token, then:
    systemctl enable --now raftsman-agent
DONE
