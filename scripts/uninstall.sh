#!/bin/sh
# Stop and remove ovsgre installed by scripts/install.sh.  Open vSwitch,
# Docker and the plugin's state (/var/lib/ovsgre, the OVS bridge) are kept
# unless --purge is given.  Remove ovsgre networks (docker network rm)
# first: containers on them lose their network.
set -eu

PREFIX=${OVSGRE_PREFIX:-/opt/ovsgre}
BIN_DIR=${OVSGRE_BIN_DIR:-/usr/local/bin}
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

say() { printf '%s\n' "ovsgre-uninstall: $*"; }
[ "$(id -u)" = 0 ] || { say "run as root" >&2; exit 1; }

if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/ovsgre.service ]; then
    systemctl disable --now ovsgre >/dev/null 2>&1 || true
    rm -f /etc/systemd/system/ovsgre.service
    systemctl daemon-reload
elif [ -f /run/ovsgre.pid ]; then
    pid=$(cat /run/ovsgre.pid)
    if kill "$pid" 2>/dev/null; then
        say "stopping the plugin (pid $pid)"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f /run/ovsgre.pid
fi

if [ "$PURGE" = 1 ]; then
    set -a
    # shellcheck disable=SC1091
    [ -f /etc/default/ovsgre ] && . /etc/default/ovsgre
    set +a
    state_dir=${OVSGRE_STATE_DIR:-/var/lib/ovsgre}
    bridge=${OVSGRE_BRIDGE:-br-ovsgre}
    say "purging $state_dir, bridge $bridge and /etc/default/ovsgre"
    ovs-vsctl --timeout=10 --if-exists del-br "$bridge" || true
    rm -rf "$state_dir" /etc/default/ovsgre
fi
rm -f "$BIN_DIR/ovsgre"
rm -rf "$PREFIX"
say "done"
