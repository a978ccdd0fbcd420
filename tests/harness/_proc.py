"""Small process helpers: run commands, and stop processes strictly by PID.

Nothing here ever looks processes up by name.  Every kill goes to a PID
that the harness started itself (Popen object or a pidfile it asked the
daemon to write), optionally double-checked against /proc/PID/cmdline, or
to a PID found through a namespace / cgroup that only the harness created.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

log = logging.getLogger("ovsgre.harness")


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose str() shows stdout/stderr (for test logs)."""

    def __str__(self) -> str:  # pragma: no cover - formatting only
        base = super().__str__()
        out = (self.stdout or "").strip()
        err = (self.stderr or "").strip()
        if out:
            base += "\n--- stdout ---\n" + out[-4000:]
        if err:
            base += "\n--- stderr ---\n" + err[-4000:]
        return base


def merged_env(env: Optional[Mapping[str, str]]) -> Optional[dict]:
    """None -> inherit; a mapping -> os.environ updated with it."""
    if env is None:
        return None
    full = dict(os.environ)
    full.update({k: str(v) for k, v in env.items()})
    return full


def run(argv: Sequence[str], check: bool = True, timeout: float = 60,
        env: Optional[Mapping[str, str]] = None, input: Optional[str] = None,
        stdin=None) -> subprocess.CompletedProcess:
    """Run argv (a list, never a shell string), capturing text output."""
    argv = [str(a) for a in argv]
    kw = {}
    if input is not None:
        kw["input"] = input
    elif stdin is not None:
        kw["stdin"] = stdin
    else:
        kw["stdin"] = subprocess.DEVNULL
    cp = subprocess.run(argv, capture_output=True, text=True,
                        timeout=timeout, env=merged_env(env), **kw)
    if check and cp.returncode != 0:
        raise CommandError(cp.returncode, argv, cp.stdout, cp.stderr)
    return cp


# ---------------------------------------------------------------- /proc

def proc_state(pid: int) -> Optional[str]:
    """State letter from /proc/PID/stat, or None if the PID does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm may contain spaces/parens: the state follows the last ')'.
    try:
        return data[data.rindex(")") + 2]
    except (ValueError, IndexError):
        return None


def pid_alive(pid: Optional[int]) -> bool:
    """True if PID exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def ppid_of(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
        return int(data[data.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def all_pids() -> list:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root: int) -> list:
    """PIDs of all live descendants of root (not including root)."""
    children: dict = {}
    for p in all_pids():
        pp = ppid_of(p)
        if pp is not None:
            children.setdefault(pp, []).append(p)
    out, todo = [], [root]
    while todo:
        cur = todo.pop()
        for c in children.get(cur, []):
            out.append(c)
            todo.append(c)
    return out


def ns_inode(pid: int, kind: str = "mnt") -> Optional[tuple]:
    """(st_dev, st_ino) of /proc/PID/ns/KIND, or None."""
    try:
        st = os.stat(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_ns(ident: tuple, kind: str = "mnt") -> list:
    """All PIDs whose namespace of KIND is ident (from ns_inode)."""
    me = os.getpid()
    return [p for p in all_pids() if p != me and ns_inode(p, kind) == ident]


def pids_in_cgroup(name: str) -> list:
    """PIDs with a cgroup path component exactly equal to name (any hierarchy)."""
    out = []
    for p in all_pids():
        try:
            with open(f"/proc/{p}/cgroup") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            path = line.split(":", 2)[-1]
            if name in path.split("/"):
                out.append(p)
                break
    return out


def read_pidfile(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def wait_gone(pids: Iterable[int], timeout: float) -> list:
    """Wait until all pids are dead; return the ones still alive."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def terminate(pids: Iterable[int], timeout: float = 5.0,
              verify: Optional[Callable[[int], bool]] = None,
              popen: Optional[subprocess.Popen] = None,
              what: str = "process") -> None:
    """SIGTERM the given PIDs, wait, then SIGKILL the survivors.

    verify(pid) is checked before signalling; PIDs failing it (e.g. reused
    by an unrelated process) are left alone.  popen, if given, is reaped.
    """
    targets = []
    for p in pids:
        if not pid_alive(p):
            continue
        if verify is not None and not verify(p):
            log.warning("not killing %s pid %s: identity check failed (%s)",
                        what, p, cmdline(p))
            continue
        targets.append(p)
    for p in targets:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    alive = wait_gone(targets, timeout)
    for p in alive:
        log.warning("%s pid %s ignored SIGTERM for %.1fs; SIGKILL", what, p,
                    timeout)
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    alive = wait_gone(alive, 5.0)
    if alive:
        log.error("%s pids %s still alive after SIGKILL", what, alive)
    if popen is not None:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("%s pid %s could not be reaped", what, popen.pid)


def unmount_under(path: str) -> None:
    path = os.path.abspath(path)
    mounts = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp == path or mp.startswith(path + "/"):
                    mounts.append(mp)
    except OSError:
        return
    for mp in reversed(mounts):
        cp = run(["umount", "-l", mp], check=False)
        if cp.returncode != 0:
            log.warning("umount -l %s: %s", mp, cp.stderr.strip())
