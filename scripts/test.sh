#!/bin/sh
# Run the whole ovsgre test suite (unit, integration, end-to-end) as root on
# a Debian 12 host.  Installs what the tests need first: Debian packages
# (Open vSwitch, Docker, busybox-static, qemu for the kernel-datapath
# guest, ...) and a virtualenv with the package and pytest.  Extra arguments go to pytest, e.g.
#   sudo ./scripts/test.sh tests/unit        # the fast tier only
#   sudo ./scripts/test.sh -m "not e2e"      # skip the dockerd tier
# Environment: OVSGRE_SKIP_APT=1 skips apt; OVSGRE_TEST_VENV picks the venv.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OVSGRE_TEST_VENV:-$REPO/.venv}

[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (tests create network namespaces)" >&2; exit 1; }

if [ "${OVSGRE_SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends \
        openvswitch-switch docker.io docker-compose containerd runc busybox-static \
        iproute2 ethtool iperf3 tcpdump iputils-ping kmod procps \
        etcd-server etcd-client openssl debootstrap \
        qemu-system-x86 cpio \
        python3 python3-venv python3-pip >/dev/null
fi

[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
"$VENV/bin/pip" install -q -e "$REPO[test]"

# scripts/demo.sh uses this script to set up the same environment
[ "${OVSGRE_SETUP_ONLY:-0}" = 1 ] && exit 0

cd "$REPO"
PATH="$VENV/bin:$PATH" exec "$VENV/bin/python" -m pytest "$@"
