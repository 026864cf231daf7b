#!/usr/bin/env bash
# For hosts that cannot build or run pgnode (no Rust toolchain, macOS, Windows, arm64): the first
# guest builds pgnode for its own architecture with Debian's rustc-web/cargo-web and creates the
# cluster's secrets with it. The Vagrantfile runs this, then downloads OUT/pgnode and
# OUT/secrets.json to the host for the other guests.
#
#   guest-build.sh build OUT     install the toolchain, build, install as /tmp/pgnode, secrets
#   guest-build.sh secrets OUT   only `pgnode secrets` with the uploaded /tmp/pgnode
#   guest-build.sh warm          the toolchain and the cargo build only (no binary, no secrets):
#                                provision/vagrant-test runs it natively in a chroot of the test
#                                box's root, so that the first guest's `cargo build` (the same
#                                function below: same paths, profile, flags) finds its target
#                                directory fresh and compiles only what changed since
#
# Crates come from /vagrant/vendor when it exists (`cargo vendor vendor` on some machine: an
# offline build), else from crates.io. Secrets are created by `pgnode secrets` only, beside the
# config (/vagrant/config/secrets.json, kept if the host already had one), and are never printed.
set -euo pipefail

mode=${1:?usage: guest-build.sh build|secrets OUT, or guest-build.sh warm}
out=${2:-}
[ -n "$out" ] || [ "$mode" = warm ] || { echo "guest-build: usage: guest-build.sh build|secrets OUT" >&2; exit 2; }
src=/vagrant
config=${PGNODE_CONFIG:-$src/config/cluster.json}
work=/var/tmp/pgnode-build # the guest's own: /vagrant is an rsync copy
bin=/tmp/pgnode
say() { echo "guest-build: $*"; }
[ "$(id -u)" = 0 ] || { echo "guest-build: must run as root" >&2; exit 2; }

apt_install() { # as pgnode does: install, and refresh the lists once when that fails
  local apt=(apt-get -y -q --no-install-recommends -o Dpkg::Options::=--force-confold install "$@")
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 && return 0
  apt-get -q update >/dev/null
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null
}

toolchain() {
  local t0=$SECONDS
  # Debian 12 and 13 ship Rust 1.96 as rustc-web/cargo-web (Debian 12's plain rustc is too old).
  apt_install rustc-web cargo-web gcc libc6-dev
  say "toolchain: $(cargo --version) ($((SECONDS - t0)) s)"
}

compile() { # sets triple
  local cargo_args=()
  triple=$(rustc -vV | sed -n 's/^host: //p')
  if [ -d "$src/vendor" ]; then
    cargo_args=(--offline --config 'source.crates-io.replace-with="vendored"'
      --config "source.vendored.directory=\"$src/vendor\"")
    say "crates: $src/vendor (offline)"
  fi
  mkdir -p "$work"
  # A static binary like provision/build's, with the lighter `guest` profile (no LTO): compiling
  # under emulation is slow. --target keeps crt-static away from the proc-macro crates.
  (cd "$src" && CARGO_HOME=$work/cargo-home CARGO_TARGET_DIR=$work/target \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build "${cargo_args[@]}" --locked --profile guest --target "$triple" -p pgnode)
}

build() {
  local t0 triple
  toolchain
  t0=$SECONDS
  compile
  # Owned by the SSH user, as Vagrant's own upload of it would be: `vagrant provision` uploads
  # the binary to the same path later, and a root-owned file in /tmp (sticky) refuses that.
  install -m 0755 -o "$(stat -c %U "$src")" "$work/target/$triple/guest/pgnode" "$bin"
  say "built pgnode for $triple in $((SECONDS - t0)) s ($(stat -c %s "$bin") bytes)"
}

case $mode in
  build) build ;;
  secrets) [ -x "$bin" ] || { echo "guest-build: $bin is missing" >&2; exit 2; } ;;
  warm)
    toolchain
    t0=$SECONDS
    compile
    say "warmed $work/target for $triple in $((SECONDS - t0)) s"
    exit 0
    ;;
  *) echo "guest-build: unknown mode $mode (build|secrets|warm)" >&2; exit 2 ;;
esac
# `pgnode secrets` makes SSH keys with ssh-keygen: Vagrant boxes have it, a minimal root may not
# (the arm64 proof's debootstrap root did not).
command -v ssh-keygen >/dev/null || apt_install openssh-client
"$bin" secrets --config "$config"
# For the download by the SSH user (the owner of the synced folder), readable by nobody else.
user=$(stat -c %U "$src")
rm -rf "$out"
install -d -m 0700 -o "$user" "$out"
install -m 0600 -o "$user" "$bin" "$out/pgnode"
install -m 0600 -o "$user" "$(dirname "$config")/secrets.json" "$out/secrets.json"
say "binary and secrets ready for the host in $out"
