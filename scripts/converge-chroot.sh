#!/usr/bin/env bash
# Converge ansible/site.yml into a throwaway Debian 12 root through Ansible's
# chroot connection: what CI does (tests/ops/test_converge.py) and what a
# developer runs to try a role change without a VM. Run as root.
#
#   scripts/converge-chroot.sh root ROOT       make ROOT a fresh Debian 12 (bookworm) root
#   scripts/converge-chroot.sh mount ROOT      mount /proc, /sys, a private /dev, the bundle
#                                              and the apt cache into ROOT
#   scripts/converge-chroot.sh converge ROOT [ansible-playbook args...]
#                                              mount, run site.yml into ROOT, unmount
#   scripts/converge-chroot.sh umount ROOT     unmount everything under ROOT
#   scripts/converge-chroot.sh destroy ROOT    unmount and delete ROOT
#
# Environment:
#   ENCLAVE_BUNDLE  wheelhouse of the release (scripts/build-wheelhouse.sh); bound
#                   read-only at /srv/enclave-bundle/wheels and installed with --no-index
#   ENCLAVE_STATE   folder for the inventory and the recovery passphrase the
#                   converge makes (default: ROOT.state beside ROOT)
#   ENCLAVE_DEBIAN_MIRROR  where debootstrap fetches from (default deb.debian.org)
#   ENCLAVE_CI_CACHE  cache across runs (default /var/cache/enclave-ci): the
#                   debootstrap'd root as a tarball (rebuilt after 7 days) and
#                   the .deb files apt fetched
#
# No systemd runs in ROOT: the playbook sees a chroot (base_live_system false),
# writes every file and enables units, and starts, reloads or applies nothing,
# the firewall included. Package scripts are kept from starting services by
# ROOT/usr/sbin/policy-rc.d.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ENCLAVE_CI_CACHE:-/var/cache/enclave-ci}
MIRROR=${ENCLAVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ROOT_TARBALL=$CACHE/debootstrap/$SUITE-$(dpkg --print-architecture)-root.tar.gz
ROOT_MAX_AGE_DAYS=7
BUNDLE_MOUNT=/srv/enclave-bundle/wheels

die() { echo "converge-chroot: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is not installed (apt-get install $2)"; }

[ "$(id -u)" -eq 0 ] || die "run as root (chroot, mount and debootstrap need it)"

make_root() {
    local root=$1
    [ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || die "$root exists and is not empty"
    mkdir -p "$root" "$CACHE/debootstrap"
    if [ -f "$ROOT_TARBALL" ] && [ -n "$(find "$ROOT_TARBALL" -mtime -$ROOT_MAX_AGE_DAYS)" ]; then
        echo "converge-chroot: unpacking the cached $SUITE root ($ROOT_TARBALL)"
        tar -xzf "$ROOT_TARBALL" -C "$root" --numeric-owner
    else
        need debootstrap debootstrap
        echo "converge-chroot: debootstrap $SUITE from $MIRROR (cached afterwards)"
        local started=$SECONDS
        debootstrap "$SUITE" "$root" "$MIRROR"
        echo "converge-chroot: debootstrap took $((SECONDS - started)) s"
        tar -czf "$ROOT_TARBALL.part" -C "$root" --numeric-owner .
        mv "$ROOT_TARBALL.part" "$ROOT_TARBALL"
    fi
    # Package scripts must not start services in the root (nor on this machine).
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
}

is_mounted() { mountpoint -q "$1"; }

mount_root() {
    local root=$1
    [ -x "$root/bin/sh" ] || die "$root is not a Debian root (run: $0 root $root)"
    is_mounted "$root/proc" || mount -t proc proc "$root/proc"
    is_mounted "$root/sys" || mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    # A /dev of its own with the usual device nodes: none of this machine's disks.
    if ! is_mounted "$root/dev"; then
        mount -t tmpfs -o nosuid,mode=0755,size=64k devtmpfs-enclave "$root/dev"
        local node name major minor
        for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
            read -r name major minor <<<"$node"
            mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
        done
        mkdir -p "$root/dev/pts" "$root/dev/shm"
        mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
        ln -s pts/ptmx "$root/dev/ptmx"
        mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$root/dev/shm"
        ln -s /proc/self/fd "$root/dev/fd"
        ln -s /proc/self/fd/0 "$root/dev/stdin"
        ln -s /proc/self/fd/1 "$root/dev/stdout"
        ln -s /proc/self/fd/2 "$root/dev/stderr"
    fi
    # /run is a tmpfs on a real host: the playbook's tmpfiles.d entry is what recreates
    # /run/enclave at boot; here the role creates it directly.
    mkdir -p "$CACHE/apt-archives/partial"
    if ! is_mounted "$root/var/cache/apt/archives"; then
        mount --bind "$CACHE/apt-archives" "$root/var/cache/apt/archives"
    fi
    if [ -n "${ENCLAVE_BUNDLE:-}" ] && ! is_mounted "$root$BUNDLE_MOUNT"; then
        [ -d "$ENCLAVE_BUNDLE" ] || die "ENCLAVE_BUNDLE=$ENCLAVE_BUNDLE is not a folder"
        mkdir -p "$root$BUNDLE_MOUNT"
        mount --bind "$ENCLAVE_BUNDLE" "$root$BUNDLE_MOUNT"
        mount -o remount,bind,ro "$root$BUNDLE_MOUNT"
    fi
}

umount_root() {
    local root target
    root=$(realpath "$1")
    # Deepest first.
    { findmnt -rn -o TARGET | grep -E "^$root(/|$)" || true; } | sort -r | while read -r target; do
        umount "$target" 2>/dev/null || umount -l "$target"
    done
}

converge() {
    local root state inventory
    root=$(realpath "$1"); shift
    state=${ENCLAVE_STATE:-$root.state}
    mkdir -p "$state"
    chmod 0700 "$state"
    inventory=$state/inventory.yml
    cat > "$inventory" <<EOF
# Written by scripts/converge-chroot.sh: the box is the Debian root at $root.
all:
  children:
    box:
      hosts:
        $root:
          ansible_connection: community.general.chroot
          ansible_python_interpreter: /usr/bin/python3
          # The playbook detects the chroot by itself; said here too, so that not
          # even a detection bug could start, stop or firewall this machine.
          base_live_system: false
          appliance_bundle_dir: "${ENCLAVE_BUNDLE:+/srv/enclave-bundle}"
          appliance_recovery_passphrase_file: $state/recovery-passphrase.txt
          appliance_hostnames: [enclave.test]
    workers:
      hosts: {}
EOF
    mount_root "$root"
    trap 'umount_root "$root"' EXIT
    local venv=$REPO/.venv/bin
    [ -x "$venv/ansible-playbook" ] || die "$venv/ansible-playbook is missing (make install-test)"
    # A clean environment: nothing of this machine's pip or Python settings may leak
    # into the root's pip through the chroot connection.
    local rc=0
    (cd "$REPO/ansible" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$state" LANG=C.UTF-8 \
        ANSIBLE_CONFIG="$REPO/ansible/ansible.cfg" ANSIBLE_LOCAL_TEMP="$state/ansible-tmp" \
        ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
        "$venv/ansible-playbook" -i "$inventory" site.yml "$@") || rc=$?
    return $rc
}

cmd=${1:-}; root=${2:-}
if [ -z "$cmd" ] || [ -z "$root" ]; then
    die "usage: $0 root|mount|converge|umount|destroy ROOT [args]"
fi
shift 2
case $cmd in
    root) make_root "$root" ;;
    mount) mount_root "$root" ;;
    umount) umount_root "$root" ;;
    converge) converge "$root" "$@" ;;
    destroy)
        umount_root "$root"
        if findmnt -rn -o TARGET | grep -qE "^$(realpath "$root")(/|$)"; then
            die "something is still mounted under $root; not deleting it"
        fi
        rm -rf --one-file-system "$root"
        ;;
    *) die "unknown command $cmd" ;;
esac
