"""Test-only fault injection: die with SIGKILL at a named point of a call.

Off unless OVSGRE_CRASH_AT names a file.  When that file holds the name of
the point being passed (e.g. ``CreateEndpoint:after_plug``), the file is
removed (so the fault fires once) and the whole plugin (the gunicorn master
and this worker) is killed with SIGKILL, as a crash or an OOM kill would.
The end-to-end tests use it to prove that Docker's retry or the next
start-up leaves working networking and no leaks.
"""

import os
import signal

ENV = "OVSGRE_CRASH_AT"


def crash_point(name):
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as fh:
            wanted = fh.read().strip()
    except OSError:
        return
    if wanted != name:
        return
    try:
        os.unlink(path)
    except OSError:
        return   # another thread took it
    parent = os.getppid()
    if parent > 1 and _is_our_master(parent):
        os.kill(parent, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _is_our_master(pid):
    """The gunicorn master that forked this worker (not an init)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"ovsgre" in fh.read()
    except OSError:
        return False
