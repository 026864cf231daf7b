#!/usr/bin/env bash
# The one guest-side provisioning script. The Vagrantfile, the lab (provision/lab) and the
# Ansible playbook all run exactly this, so every path converges a node the same way.
#
#   guest.sh ROLE [BINARY]
#
# BINARY defaults to $PGNODE_BINARY or /tmp/pgnode (where Vagrant's file provisioner uploads it).
# The config defaults to $PGNODE_CONFIG or /vagrant/config/cluster.json (the synced folder).
set -euo pipefail

role=${1:?usage: guest.sh ROLE [BINARY]}
bin=${2:-${PGNODE_BINARY:-/tmp/pgnode}}
config=${PGNODE_CONFIG:-/vagrant/config/cluster.json}
target=/usr/local/bin/pgnode

if [ "$(id -u)" != 0 ]; then
  echo "guest.sh: must run as root (Vagrant's shell provisioner does; use sudo by hand)" >&2
  exit 2
fi
if [ ! -x "$bin" ] && [ ! -f "$bin" ]; then
  echo "guest.sh: pgnode binary not found at $bin (build it on the host with provision/build)" >&2
  exit 2
fi

# Install the binary only when it differs, so a rerun leaves the node untouched.
if ! cmp -s "$bin" "$target"; then
  install -D -m 0755 -o root -g root "$bin" "$target.new"
  mv -f "$target.new" "$target"
  echo "guest.sh: installed $target"
fi

exec "$target" --role "$role" --config "$config"
