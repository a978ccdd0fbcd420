#!/bin/sh
# Install and start ovsgre on a Debian 12 host:
#   Open vSwitch (started if not running; userspace datapath when the
#   openvswitch kernel module is missing), the ovsgre Python package in a
#   virtualenv, and the plugin itself (systemd unit where systemd runs,
#   a background process otherwise).  Re-running it upgrades and restarts.
#
# Environment (all optional):
#   OVSGRE_PREFIX      virtualenv location           (/opt/ovsgre)
#   OVSGRE_BIN_DIR     where the `ovsgre` link goes  (/usr/local/bin)
#   OVSGRE_SKIP_APT=1  do not install Debian packages
#   OVSGRE_NO_DOCKER=1 do not install/start Docker
#   OVSGRE_WHEELS=DIR  install from wheels in DIR (no package index), e.g.
#                      made with `pip wheel -w DIR .` on a connected host
#   OVSGRE_*           plugin settings, written to /etc/default/ovsgre
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${OVSGRE_PREFIX:-/opt/ovsgre}
BIN_DIR=${OVSGRE_BIN_DIR:-/usr/local/bin}
OVS_RUN=/var/run/openvswitch
LOG_DIR=/var/log/ovsgre

say() { printf '%s\n' "ovsgre-install: $*"; }
die() { say "error: $*" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ]; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"

install_packages() {
    [ "${OVSGRE_SKIP_APT:-0}" = 1 ] && return 0
    pkgs="openvswitch-switch python3 python3-venv iproute2 ethtool kmod"
    if [ "${OVSGRE_NO_DOCKER:-0}" != 1 ] && ! command -v dockerd >/dev/null; then
        pkgs="$pkgs docker.io"
    fi
    say "installing Debian packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs >/dev/null
}

install_python() {
    say "installing the ovsgre package into $PREFIX"
    [ -x "$PREFIX/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX"
    if [ -n "${OVSGRE_WHEELS:-}" ]; then
        "$PREFIX/bin/pip" install -q --upgrade --no-index \
            --find-links "$OVSGRE_WHEELS" ovsgre
    else
        "$PREFIX/bin/pip" install -q --upgrade pip >/dev/null
        "$PREFIX/bin/pip" install -q --upgrade "$REPO"
    fi
    mkdir -p "$BIN_DIR"
    ln -sf "$PREFIX/bin/ovsgre" "$BIN_DIR/ovsgre"
    render_unit > "$PREFIX/ovsgre.service"
}

# The systemd unit with ExecStart pointing at this install's `ovsgre`
# (the template says /usr/local/bin, the OVSGRE_BIN_DIR default).  Kept
# as $PREFIX/ovsgre.service too, for other supervisors and for checking.
render_unit() {
    exe="$BIN_DIR/ovsgre"
    case "$exe" in *[[:space:]]*) exe="\"$exe\"" ;; esac
    exe_sed=$(printf '%s' "$exe" | sed 's/[\\|&]/\\&/g')
    sed "s|^ExecStart=.*|ExecStart=$exe_sed serve|" \
        "$REPO/scripts/systemd/ovsgre.service"
}

ovs_kernel_module() {
    [ -d /sys/module/openvswitch ] || modprobe -q openvswitch 2>/dev/null
}

userspace_vswitchd_unit() {
    # ovs-ctl (behind ovs-vswitchd.service) refuses to start without the
    # kernel module; the userspace datapath needs none.
    dropin=/etc/systemd/system/ovs-vswitchd.service.d
    mkdir -p "$dropin"
    cat > "$dropin/ovsgre-userspace.conf" <<UNIT
[Service]
Nice=-10
ExecStart=
ExecStart=/usr/sbin/ovs-vswitchd unix:$OVS_RUN/db.sock --pidfile=$OVS_RUN/ovs-vswitchd.pid --log-file=/var/log/openvswitch/ovs-vswitchd.log -vconsole:off --detach --no-chdir
UNIT
    systemctl daemon-reload
}

start_ovs() {
    if have_systemd; then
        ovs_kernel_module || userspace_vswitchd_unit
        systemctl enable --now openvswitch-switch >/dev/null 2>&1 || true
    fi
    ovs_ctl=/usr/share/openvswitch/scripts/ovs-ctl
    if ! running "$OVS_RUN/ovsdb-server.pid"; then
        say "starting ovsdb-server"
        "$ovs_ctl" --no-ovs-vswitchd --system-id=random start
    fi
    if running "$OVS_RUN/ovs-vswitchd.pid"; then
        return 0
    fi
    if ovs_kernel_module; then
        say "starting ovs-vswitchd (kernel datapath)"
        "$ovs_ctl" --no-ovsdb-server --system-id=random start
    else
        # ovs-ctl refuses to start without the kernel module; the
        # userspace (netdev) datapath needs none.
        say "no openvswitch kernel module: starting ovs-vswitchd for the" \
            "userspace datapath"
        mkdir -p /var/log/openvswitch
        # nice -10 as ovs-ctl gives it: with the userspace datapath every
        # packet waits for ovs-vswitchd to be scheduled
        nice -n -10 ovs-vswitchd "unix:$OVS_RUN/db.sock" --pidfile="$OVS_RUN/ovs-vswitchd.pid" \
            --log-file=/var/log/openvswitch/ovs-vswitchd.log -vconsole:off \
            --detach --no-chdir
    fi
}

write_defaults() {
    [ -f /etc/default/ovsgre ] && return 0
    env | grep '^OVSGRE_' | grep -v -e '^OVSGRE_PREFIX=' -e '^OVSGRE_BIN_DIR=' \
        -e '^OVSGRE_SKIP_APT=' -e '^OVSGRE_NO_DOCKER=' -e '^OVSGRE_WHEELS=' \
        > /etc/default/ovsgre || true
}

start_plugin() {
    set -a
    # shellcheck disable=SC1091
    [ -f /etc/default/ovsgre ] && . /etc/default/ovsgre
    set +a
    socket=$("$BIN_DIR/ovsgre" settings | sed -n 's/.*"socket": "\(.*\)",/\1/p')
    if have_systemd; then
        install -m 0644 "$PREFIX/ovsgre.service" \
            /etc/systemd/system/ovsgre.service
        systemctl daemon-reload
        systemctl enable ovsgre >/dev/null 2>&1
        systemctl restart ovsgre
    else
        mkdir -p "$LOG_DIR"
        pidfile=/run/ovsgre.pid
        if running "$pidfile"; then
            say "stopping the running plugin (pid $(cat "$pidfile"))"
            kill "$(cat "$pidfile")"
            while running "$pidfile"; do sleep 0.2; done
        fi
        say "starting the plugin (log: $LOG_DIR/ovsgre.log)"
        # No systemd to restart it: a small supervisor does (like
        # Restart=always); stopping the supervisor stops the plugin.
        # shellcheck disable=SC2016
        nohup sh -c '
            trap "kill \$child 2>/dev/null; wait \$child; exit 0" TERM INT
            while :; do
                "$0" serve & child=$!
                wait $child
                echo "ovsgre: plugin exited ($?); restarting in 1 s" >&2
                sleep 1
            done' "$BIN_DIR/ovsgre" >>"$LOG_DIR/ovsgre.log" 2>&1 &
        echo $! > "$pidfile"
    fi
    # The socket appears before the plugin has reconciled and created its
    # bridge; it is ready when it answers.
    i=0
    until plugin_ready "$socket"; do
        i=$((i + 1))
        [ $i -gt 150 ] && die "plugin at $socket does not answer; see" \
            "$LOG_DIR/ovsgre.log or journalctl -u ovsgre"
        sleep 0.2
    done
    say "plugin ready on $socket"
}

plugin_ready() {
    [ -S "$1" ] || return 1
    "$PREFIX/bin/python" - "$1" 2>/dev/null <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"POST /Plugin.Activate HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
sys.exit(0 if b" 200 " in s.recv(64) else 1)
PY
}

start_docker() {
    [ "${OVSGRE_NO_DOCKER:-0}" = 1 ] && return 0
    if have_systemd; then
        systemctl enable --now docker >/dev/null 2>&1 || true
        return 0
    fi
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    say "dockerd is not running (no systemd): starting it" \
        "(log: /var/log/dockerd.log)"
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
    i=0
    until docker info >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 150 ] && die "dockerd did not start; see /var/log/dockerd.log"
        sleep 0.2
    done
}

install_packages
install_python
start_ovs
write_defaults
start_plugin
start_docker
say "done: docker network create -d ovsgre --subnet 198.18.10.0/24 blue"
