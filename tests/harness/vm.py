"""A Debian kernel under qemu, to run tests with the OVS kernel datapath.

This machine's kernel has no openvswitch module; Debian's own kernel
package has one.  Guest(...).run(argv) boots that kernel under qemu
(TCG: software emulation, no nested KVM here) with this machine's root
filesystem shared read-only over virtio-9p and a tmpfs overlay on top, so
the guest runs the same OVS, dockerd, etcd, Python and virtualenv at the
same paths; runs argv there as root; and returns its exit status and
output.  The guest has no network device (`-nic none`): its hosts are
network namespaces inside it, as on the host.

Everything comes from Debian's packages: qemu-system-x86, the kernel
package named by linux-image-amd64 (downloaded, never installed), and
busybox-static for the initramfs.  The kernel is unpacked once into
CACHE (OVSGRE_VM_CACHE); each boot gets a fresh initramfs and an output
directory shared read-write with the guest.

Facts this relies on are in docs/datapaths.md ("How the kernel datapath is
tested"); the one trap worth repeating: Debian's OVS 3.1.0 runs no upcall
handler threads when ovs-vswitchd starts within 10 s of boot, so the guest
waits until /proc/uptime passes GUEST_SETTLE before running anything.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Mapping, Optional, Sequence

from ._proc import run, terminate

log = logging.getLogger("ovsgre.harness")

CACHE = os.environ.get("OVSGRE_VM_CACHE", "/var/cache/ovsgre-vm")
BUSYBOX = "/bin/busybox"
QEMU = "qemu-system-x86_64"
# Loaded by the initramfs, in this order, to mount the 9p root and the
# overlay on it (Debian builds them as modules).
INITRD_MODULES = (
    "drivers/virtio/virtio_ring", "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci_modern_dev", "drivers/virtio/virtio_pci",
    "fs/netfs/netfs", "fs/fscache/fscache", "net/9p/9pnet",
    "net/9p/9pnet_virtio", "fs/9p/9p", "fs/overlayfs/overlay")
OUT_TAG, ROOT_TAG = "ovsgreout", "hostroot"
GUEST_OUT = "/mnt/ovsgre-vm-out"
GUEST_INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "vm_init.py")


@dataclasses.dataclass
class Kernel:
    version: str
    root: str            # the unpacked package: boot/, lib/modules/VERSION

    @property
    def vmlinuz(self) -> str:
        return os.path.join(self.root, "boot", "vmlinuz-" + self.version)

    @property
    def modules(self) -> str:
        return os.path.join(self.root, "lib", "modules", self.version)


@dataclasses.dataclass
class GuestResult:
    returncode: Optional[int]   # None: the guest never reported one
    output: str                 # what argv printed (stdout and stderr)
    console: str                # the guest's serial console
    seconds: float
    outdir: str


def kernel_package() -> str:
    """The kernel package linux-image-amd64 points at (one exact name: a
    glob would download every flavour)."""
    out = run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    for line in out.splitlines():
        name = line.split(":", 1)[-1].strip()
        if line.strip().startswith("Depends:") and \
                name.startswith("linux-image-") and name.endswith("-amd64"):
            return name
    raise RuntimeError("apt-cache depends linux-image-amd64 names no "
                       "kernel package:\n" + out)


def ensure_kernel(cache: str = CACHE) -> Kernel:
    """Download and unpack the kernel package once; depmod its modules
    (the unpacked tree has no modules.dep)."""
    package = kernel_package()
    version = package[len("linux-image-"):]
    kernel = Kernel(version, os.path.join(cache, package))
    if os.path.exists(os.path.join(kernel.modules, "modules.dep")):
        return kernel
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        _download(package, tmp)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {package}: got {debs}")
        unpacked = os.path.join(tmp, "root")
        run(["dpkg-deb", "-x", os.path.join(tmp, debs[0]), unpacked],
            timeout=300)
        run(["depmod", "-b", unpacked, version], timeout=300)
        shutil.rmtree(kernel.root, ignore_errors=True)
        os.rename(unpacked, kernel.root)
    return kernel


def _download(package: str, directory: str) -> None:
    cp = subprocess.run(["apt-get", "download", "-q", package], cwd=directory,
                        capture_output=True, text=True, timeout=600)
    if cp.returncode != 0:
        raise RuntimeError(f"apt-get download {package} failed:\n"
                           + cp.stdout + cp.stderr)


INIT_SCRIPT = """#!/bin/busybox sh
# Stage 1: mount the host's root (9p, read-only) under a tmpfs overlay and
# hand over to {stage2}.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /lower /upper /newroot
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in {modlist}; do insmod /mod/$m.ko || echo "insmod $m failed"; done
p9=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $p9,ro,cache=loose {root_tag} /lower || exec sh
mount -t tmpfs -o size=75% tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay \\
    -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || exec sh
mkdir -p /newroot/usr/lib/modules/{version} /newroot{out}
mount --bind /newroot{modules} /newroot/usr/lib/modules/{version}
mount -t 9p -o $p9 {out_tag} /newroot{out}
umount /proc
exec switch_root /newroot /usr/bin/python3 {stage2} {out}
"""


def build_initramfs(kernel: Kernel, path: str) -> None:
    """A gzipped cpio: busybox, the modules of INITRD_MODULES, /init."""
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "bin"))
        os.makedirs(os.path.join(tmp, "mod"))
        shutil.copy(BUSYBOX, os.path.join(tmp, "bin", "busybox"))
        names = []
        for rel in INITRD_MODULES:
            src = os.path.join(kernel.modules, "kernel", rel + ".ko")
            name = os.path.basename(rel)
            shutil.copy(src, os.path.join(tmp, "mod", name + ".ko"))
            names.append(name)
        init = os.path.join(tmp, "init")
        with open(init, "w") as fh:
            fh.write(INIT_SCRIPT.format(
                modlist=" ".join(names), root_tag=ROOT_TAG, out_tag=OUT_TAG,
                version=kernel.version, modules=kernel.modules,
                out=GUEST_OUT, stage2=GUEST_INIT))
        os.chmod(init, 0o755)
        files = subprocess.run(["find", "."], cwd=tmp, capture_output=True,
                               text=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"],
                              cwd=tmp, input=files.encode(),
                              capture_output=True, check=True).stdout
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(cpio)


def qemu_argv(kernel: Kernel, initrd: str, outdir: str, memory: str,
              cpus: int) -> list:
    """TCG (nested KVM does not work here), no NIC, the host's / as the
    read-only root, outdir read-write, the console into outdir."""
    virtfs = "local,path={},mount_tag={},security_model=passthrough," \
             "multidevs=remap"
    return [QEMU, "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", str(cpus), "-m", memory, "-nic", "none",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", "file:" + os.path.join(outdir, "console.log"),
            "-kernel", kernel.vmlinuz, "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 quiet loglevel=4",
            "-virtfs", virtfs.format("/", ROOT_TAG) + ",readonly=on",
            "-virtfs", virtfs.format(outdir, OUT_TAG)]


class Guest:
    """One boot of the guest per run(): argv runs as root with env and
    cwd; the guest powers off when it ends."""

    def __init__(self, memory: str = "8G", cpus: int = 2,
                 kernel: Optional[Kernel] = None):
        self.memory, self.cpus = memory, cpus
        self.kernel = kernel or ensure_kernel()

    def run(self, argv: Sequence[str], env: Optional[Mapping] = None,
            cwd: str = "/", timeout: float = 1800,
            outdir: Optional[str] = None) -> GuestResult:
        outdir = outdir or tempfile.mkdtemp(prefix="ovsgre-vm-")
        with open(os.path.join(outdir, "job.json"), "w") as fh:
            json.dump({"argv": list(argv), "env": dict(env or {}),
                       "cwd": cwd}, fh)
        initrd = os.path.join(outdir, "initrd.gz")
        build_initramfs(self.kernel, initrd)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            qemu_argv(self.kernel, initrd, outdir, self.memory, self.cpus),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(outdir, "qemu.err"), "wb"),
            start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("guest still running after %ss: stopping qemu pid %s",
                      timeout, proc.pid)
        finally:
            terminate([proc.pid], popen=proc, what="qemu")
        return GuestResult(_read_rc(outdir), _read(outdir, "output.log"),
                           _read(outdir, "console.log") +
                           _read(outdir, "qemu.err"),
                           time.monotonic() - t0, outdir)


def _read(outdir: str, name: str) -> str:
    try:
        with open(os.path.join(outdir, name), errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _read_rc(outdir: str) -> Optional[int]:
    text = _read(outdir, "rc").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def available() -> Optional[str]:
    """None when a guest can boot here, else why not."""
    for tool in (QEMU, "cpio", "apt-get", "dpkg-deb", "depmod"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (busybox-static)"
    return None


if __name__ == "__main__":      # a shell in the guest's terms, for debugging
    result = Guest().run(sys.argv[1:] or ["uname", "-a"])
    print(result.output, end="")
    print(f"[guest: exit {result.returncode}, {result.seconds:.1f} s, "
          f"files in {result.outdir}]", file=sys.stderr)
    sys.exit(1 if result.returncode is None else result.returncode)
