"""A tiny busybox image imported without any registry."""
from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
import threading
from typing import Optional

from ._proc import run

BUSYBOX = "/bin/busybox"          # from busybox-static
BUSYBOX_TAG = "ovsgre-test/busybox:latest"

_lock = threading.Lock()
_cache_dir: Optional[str] = None
_tarball: Optional[str] = None


def _cleanup_cache() -> None:
    if _cache_dir:
        shutil.rmtree(_cache_dir, ignore_errors=True)


def build_busybox_rootfs(rootfs: str) -> None:
    """Populate rootfs: /bin/busybox, one symlink per applet in /bin,
    /sbin /usr/bin /usr/sbin -> bin, minimal /etc/passwd and /etc/group."""
    binp = os.path.join(rootfs, "bin")
    os.makedirs(binp)
    shutil.copy2(BUSYBOX, os.path.join(binp, "busybox"))
    applets = run([BUSYBOX, "--list"]).stdout.split()
    for a in applets:
        if a == "busybox" or "/" in a:
            continue
        os.symlink("busybox", os.path.join(binp, a))
    os.symlink("bin", os.path.join(rootfs, "sbin"))
    os.makedirs(os.path.join(rootfs, "usr"))
    os.symlink("../bin", os.path.join(rootfs, "usr", "bin"))
    os.symlink("../bin", os.path.join(rootfs, "usr", "sbin"))
    for d in ("etc", "root", "proc", "sys", "dev", "var", "home", "mnt",
              "run"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    tmp = os.path.join(rootfs, "tmp")
    os.makedirs(tmp)
    os.chmod(tmp, 0o1777)
    os.makedirs(os.path.join(rootfs, "var", "tmp"))
    os.chmod(os.path.join(rootfs, "var", "tmp"), 0o1777)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


def busybox_tarball() -> str:
    """Path of a cached rootfs tarball (built once per process)."""
    global _cache_dir, _tarball
    with _lock:
        if _tarball and os.path.exists(_tarball):
            return _tarball
        if _cache_dir is None:
            _cache_dir = tempfile.mkdtemp(prefix="ovgt-img-")
            atexit.register(_cleanup_cache)
        rootfs = os.path.join(_cache_dir, "rootfs")
        shutil.rmtree(rootfs, ignore_errors=True)
        build_busybox_rootfs(rootfs)
        tb = os.path.join(_cache_dir, "busybox.tar")
        with tarfile.open(tb + ".part", "w") as tf:
            tf.add(rootfs, arcname=".")
        os.replace(tb + ".part", tb)
        shutil.rmtree(rootfs, ignore_errors=True)
        _tarball = tb
        return tb


def import_busybox(docker_host, tag: str = BUSYBOX_TAG) -> str:
    """`docker import -c 'CMD ["/bin/sh"]' - TAG` of the busybox rootfs into
    docker_host (a DockerHost, via its docker CLI); returns the tag."""
    tb = busybox_tarball()
    with open(tb, "rb") as f:
        docker_host.cli("import", "-c", 'CMD ["/bin/sh"]', "-", tag, stdin=f)
    return tag
