#!/bin/sh
# The three-host demo: three simulated hosts (network namespaces with their
# own OVS, dockerd and ovsgre) with etcd, on this one machine; containers
# on each, ping and TCP across hosts, `ovsgre status`; everything is torn
# down at the end, also on Ctrl-C.  Run as root.  `--pause` waits for Enter
# before tearing down, so you can look around.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
OVSGRE_SETUP_ONLY=1 "$REPO/scripts/test.sh"
exec "${OVSGRE_TEST_VENV:-$REPO/.venv}/bin/python" "$REPO/scripts/demo.py" "$@"
