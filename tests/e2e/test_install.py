"""The README's first command, `scripts/install.sh`, on a host without
systemd, sealed in a network namespace and a private mount namespace
(tmpfs over /run, /etc/openvswitch, /etc/default, /var/log), so it cannot
touch the machine's own OVS, /run/docker or plugin state.

Debian packages are installed by the test runner already (OVSGRE_SKIP_APT);
the virtualenv goes to a temporary prefix; Docker is left alone
(OVSGRE_NO_DOCKER): the dockerd side is what the other e2e tests cover.
The namespace has no route to a package index, so the package comes from
wheels built beforehand (OVSGRE_WHEELS), as on an air-gapped host.
"""

import os
import subprocess
import sys

import pytest

from tests.harness.fixtures import scratch_netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

SEALED = r"""
set -eu
for d in /run /etc/openvswitch /etc/default /var/log; do
    mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
mkdir -p /run/lock
status=0
sh "$REPO/scripts/install.sh" > "$WORK/install.log" 2>&1 || status=$?
# what a user checks afterwards, from inside the same sealed world
{
  echo "install_status=$status"
  stat -c 'socket_mode=%a' /run/docker/plugins/ovsgre.sock || true
  grep -c "^OVSGRE_STATE_DIR=$WORK/state" /etc/default/ovsgre \
      | sed 's/^/defaults_written=/'
  ovs-vsctl --timeout=10 get Bridge br-ovsgre datapath_type \
      | sed 's/^/datapath=/' || true
  "$WORK/venv/bin/python" - <<'EOF' || true
from tests.harness.plugin import call
status, reply = call("/run/docker/plugins/ovsgre.sock", "Plugin.Activate")
print("activate=%s %s" % (status, reply))
EOF
  # the systemd unit it installs (where systemd runs) starts this
  # install's ovsgre, not the template's /usr/local/bin one
  unit_exec=$(sed -n 's/^ExecStart=//p' "$WORK/venv/ovsgre.service")
  echo "unit_exec=$unit_exec"
  # shellcheck disable=SC2086
  set -- $unit_exec
  test -x "${1:-}" && "$1" --help >/dev/null 2>&1 && echo unit_exec_runs=yes
  # without systemd something must restart a plugin that died: kill -9
  # its python processes (gunicorn master and worker: the pid file's
  # process and its descendants, except a supervising shell)
  top=$(cat /run/ovsgre.pid)
  tree="$top $(pgrep -P "$top" | tr '\n' ' ')"
  for p in $tree; do tree="$tree $(pgrep -P "$p" | tr '\n' ' ')"; done
  killed=""
  for p in $tree; do
      case " $killed " in *" $p "*) continue ;; esac
      [ "$(cat /proc/"$p"/comm 2>/dev/null)" = sh ] && continue
      kill -9 "$p" 2>/dev/null && killed="$killed $p"
  done
  echo "killed=$killed"
  i=0
  while [ $i -lt 150 ]; do
      second=$(pgrep -P "$top" | head -n1)
      if [ -n "$second" ] && ! echo " $killed " | grep -q " $second " && \
          "$WORK/venv/bin/python" - 2>/dev/null <<'EOF'
import sys
from tests.harness.plugin import call
sys.exit(call("/run/docker/plugins/ovsgre.sock", "Plugin.Activate")[0] != 200)
EOF
      then echo restarted_after_kill=yes; break; fi
      i=$((i + 1)); sleep 0.2
  done
  # a second run restarts the plugin instead of failing
  sh "$REPO/scripts/install.sh" > "$WORK/install2.log" 2>&1 \
      && echo rerun=ok || echo rerun=failed
  test -S /run/docker/plugins/ovsgre.sock && echo socket_after_rerun=yes
  plugin_pid=$(cat /run/ovsgre.pid)
  sh "$REPO/scripts/uninstall.sh" > "$WORK/uninstall.log" 2>&1 \
      && echo uninstall=ok || echo uninstall=failed
  kill -0 "$plugin_pid" 2>/dev/null && echo plugin_still_running=yes
  test -e "$WORK/bin/ovsgre" && echo link_still_there=yes
  test -d "$WORK/venv" && echo venv_still_there=yes
  test -d "$WORK/state" && echo state_kept=yes
} > "$WORK/report" 2>&1
for pid in /run/ovsgre.pid /run/openvswitch/ovs-vswitchd.pid \
           /run/openvswitch/ovsdb-server.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
done
"""


@pytest.fixture
def sealed_ns():
    with scratch_netns("inst") as (ns, work):
        yield ns, work


def build_wheels(work):
    """The namespace has no network: wheels are built here first, as an
    operator of an air-gapped host would (README, OVSGRE_WHEELS)."""
    wheels = os.path.join(work, "wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", wheels,
                    REPO], check=True, timeout=600, capture_output=True)
    return wheels


@pytest.mark.reliability("fault", "plugin killed (SIGKILL) on a host without systemd: install.sh's supervisor restarts it")
def test_install_script_starts_ovs_and_plugin(sealed_ns):
    ns, work = sealed_ns
    env = dict(os.environ, REPO=REPO, WORK=work,
               OVSGRE_WHEELS=build_wheels(work),
               OVSGRE_SKIP_APT="1", OVSGRE_NO_DOCKER="1",
               OVSGRE_PREFIX=work + "/venv", OVSGRE_BIN_DIR=work + "/bin",
               OVSGRE_STATE_DIR=work + "/state",
               PYTHONPATH=REPO)
    proc = subprocess.run(
        ["nsenter", "--net=" + ns.path, "unshare", "-m",
         "--propagation", "private", "sh", "-c", SEALED],
        env=env, capture_output=True, text=True, timeout=600)
    log = _read(work, "install.log")
    report = _read(work, "report")
    assert proc.returncode == 0, proc.stderr + log
    assert "install_status=0" in report, log + report
    assert "socket_mode=660" in report, report
    assert "defaults_written=1" in report, report
    kernel = os.path.isdir("/sys/module/openvswitch")
    assert f"datapath={'system' if kernel else 'netdev'}" in report, report
    assert "activate=200" in report and "NetworkDriver" in report, \
        report + log
    assert f"unit_exec={work}/bin/ovsgre serve\n" in report, report
    assert "unit_exec_runs=yes" in report, report
    assert "restarted_after_kill=yes" in report, \
        report + _read(work, "install.log")
    assert "rerun=ok" in report, _read(work, "install2.log")
    assert "socket_after_rerun=yes" in report, report
    assert "uninstall=ok" in report, _read(work, "uninstall.log")
    assert "still" not in report, report
    assert "state_kept=yes" in report, report  # state survives uninstall


def _read(work, name):
    try:
        with open(os.path.join(work, name)) as fh:
            return fh.read()
    except OSError:
        return ""
