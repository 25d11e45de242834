#!/bin/sh
# Prepares the compose cluster (docker-compose.yml beside this script): builds the image raftsman:local from a
# raftsman binary, and makes the cluster's authorities, certificates, encryption configuration and the agents'
# node token in ./pki (kept when there: run it again after a new build to rebuild the image only).
#
# No registry is needed: the image holds the binary, the shared libraries it links and the dynamic loader,
# imported with `docker import`.
#
# Usage: deploy/compose/setup.sh [BINARY]   (default: the release build under $CARGO_TARGET_DIR or ./target)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-${CARGO_TARGET_DIR:-$here/../../target}/release/raftsman}
image=${RAFTSMAN_IMAGE:-raftsman:local}
pki=${RAFTSMAN_COMPOSE_PKI:-$here/pki}
[ -x "$binary" ] || { echo "no raftsman binary at $binary (cargo build --release, or give its path)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib/raftsman"
cp "$binary" "$root/usr/local/bin/raftsman"
# Each library ldd resolves ("name => /path (addr)") and the loader ("/path (addr)").
for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
chmod 1777 "$root/tmp"
echo 'root:x:0:0:root:/:/usr/local/bin/raftsman' > "$root/etc/passwd"
tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/raftsman"]' \
  --change 'ENV RAFTSMAN_LOG=info,openraft=warn' \
  - "$image" >/dev/null
echo "built $image from $binary"

# The replicas' fixed addresses on the compose network (docker-compose.yml's).
mkdir -p "$pki"
"$binary" certs peer-ca --dir "$pki" >/dev/null
"$binary" certs etcd-ca --dir "$pki" >/dev/null
"$binary" certs ca --dir "$pki" >/dev/null
for i in 1 2 3; do
  ip=10.213.7.1$i
  [ -f "$pki/n$i-peer.crt" ] || "$binary" certs peer --dir "$pki" --name "n$i" --host "$ip" >/dev/null
  # Clients on the host reach the published ports at 127.0.0.1.
  [ -f "$pki/n$i-etcd.crt" ] || "$binary" certs etcd --dir "$pki" --name "n$i" --host "$ip" --host 127.0.0.1 >/dev/null
  [ -f "$pki/n$i-api.crt" ] || "$binary" certs api --dir "$pki" --name "n$i" --host "$ip" --host 127.0.0.1 >/dev/null
done
[ -f "$pki/etcdctl.crt" ] || "$binary" certs etcd-client --dir "$pki" --name etcdctl >/dev/null
[ -f "$pki/node-token" ] || "$binary" certs node-token --dir "$pki" --out "$pki/node-token" >/dev/null
if [ ! -f "$pki/encryption.yaml" ]; then
  secret=$(head -c 32 /dev/urandom | base64)
  umask 077
  cat > "$pki/encryption.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: $secret
      - identity: {}
YAML
fi
# The containers run as root and read the keys through a read-only bind mount.
echo "certificates, encryption configuration and node token in $pki"
