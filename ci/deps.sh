#!/usr/bin/env bash
# Installs what cryo and its tests need on a fresh Debian machine, skipping what is present.
set -euo pipefail
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null 2>&1 || { echo "deps: no Swift toolchain found (expected swift on PATH or /opt/swift)" >&2; exit 1; }

need=()
# libcap-dev/libseccomp-dev: workloads; criu: only for its crit, an outside reader of our images;
# iproute2: veth/netns for network tests; nftables: the network lock (nft); python3-protobuf comes with criu.
# libzstd-dev: compression of checkpoint streams (cryo dump --stream-to --compress).
# runc and busybox-static: the runc test (a container checkpointed with `runc --criu cryo`).
# tmux: TmuxTests (a tmux server and its panes across a dump and restore, on a private socket).
for pkg in libcap-dev libseccomp-dev criu iproute2 libzstd-dev nftables runc busybox-static tmux; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing ${need[*]}; run as root to install them" >&2
        exit 1
    fi
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
