"""Test-only fault injection: OVSGRE_CRASH_AT kills the process once."""

import os
import signal
import subprocess
import sys

PLUGIN = os.path.join(os.path.dirname(__file__), "..", "..", "plugin")
SCRIPT = ("import sys; from ovsgre.crash_points import crash_point; "
          "crash_point(sys.argv[1]); print('alive')")


def run(point, env):
    return subprocess.run([sys.executable, "-c", SCRIPT, point],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=PLUGIN, **env))


def test_off_without_the_variable():
    env = {k: v for k, v in os.environ.items() if k != "OVSGRE_CRASH_AT"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "Join:x"],
                          capture_output=True, text=True, timeout=30,
                          env=dict(env, PYTHONPATH=PLUGIN))
    assert proc.returncode == 0 and "alive" in proc.stdout


def test_other_point_passes(tmp_path):
    marker = tmp_path / "crash"
    marker.write_text("CreateEndpoint:after_plug\n")
    proc = run("Join:after_record", {"OVSGRE_CRASH_AT": str(marker)})
    assert proc.returncode == 0 and "alive" in proc.stdout
    assert marker.exists()


def test_named_point_kills_once(tmp_path):
    marker = tmp_path / "crash"
    marker.write_text("Join:after_record\n")
    env = {"OVSGRE_CRASH_AT": str(marker)}
    proc = run("Join:after_record", env)
    assert proc.returncode == -signal.SIGKILL and "alive" not in proc.stdout
    assert not marker.exists()
    again = run("Join:after_record", env)      # fired once only
    assert again.returncode == 0 and "alive" in again.stdout


def test_missing_marker_file_is_harmless(tmp_path):
    proc = run("Join:after_record",
               {"OVSGRE_CRASH_AT": str(tmp_path / "nothing")})
    assert proc.returncode == 0
