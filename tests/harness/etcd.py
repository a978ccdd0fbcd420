"""A single-member etcd (Debian's etcd 3.4) inside a network namespace.

    e = EtcdServer(netns, "/tmp/ovgt/<prefix>-sw/etcd0.data", "198.18.0.254")
    e.start(); e.etcdctl("put", "k", "v", netns=host.netns); e.stop()

Files: the data dir as given; the log and (tls=True) the throwaway PKI live
beside it in the data dir's parent: <parent>/<name>.log, <parent>/<name>-tls/.
The process is started by the harness and stopped only by its PID.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence

from ._proc import CommandError, cmdline, run, terminate, wait_gone
from .netns import Netns

log = logging.getLogger("ovsgre.harness")

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


# argv: URL TIMEOUT [CA CERT KEY]; prints the body, exit 1 on any error.
_HEALTH_SCRIPT = r'''
import ssl, sys, urllib.request
url, timeout, ca, cert, key = sys.argv[1:6]
handlers = [urllib.request.ProxyHandler({})]
if ca:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    handlers.append(urllib.request.HTTPSHandler(context=ctx))
try:
    body = urllib.request.build_opener(*handlers).open(
        url, timeout=float(timeout)).read()
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
print(body.decode(errors="replace"))
'''


def _clean_env() -> dict:
    """os.environ without ETCD*/ETCDCTL* settings that would leak into the
    server or client (etcd reads ETCD_<FLAG> variables)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}


class EtcdServer:
    def __init__(self, netns: Netns, datadir: str, ip: str,
                 client_port: int = 2379, peer_port: int = 2380,
                 name: str = "etcd0", tls: bool = False,
                 extra_args: Optional[Sequence[str]] = None):
        self.netns = netns
        self.datadir = os.path.abspath(datadir)
        self.ip = str(ip)
        self.client_port = int(client_port)
        self.peer_port = int(peer_port)
        self.name = name
        self.tls = tls
        self.extra_args = list(extra_args or [])
        parent = os.path.dirname(self.datadir)
        self.log_path = os.path.join(parent, f"{name}.log")
        self.tls_dir = os.path.join(parent, f"{name}-tls")
        self.proc: Optional[subprocess.Popen] = None
        self.timings: dict = {}

    def __repr__(self) -> str:
        return f"EtcdServer({self.url!r} in {self.netns.name!r})"

    # ------------------------------------------------------------ urls/paths
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.ip}:{self.peer_port}"

    @property
    def ca(self) -> Optional[str]:
        return os.path.join(self.tls_dir, "ca.crt") if self.tls else None

    @property
    def client_cert(self) -> Optional[str]:
        return os.path.join(self.tls_dir, "client.crt") if self.tls else None

    @property
    def client_key(self) -> Optional[str]:
        return os.path.join(self.tls_dir, "client.key") if self.tls else None

    @property
    def server_cert(self) -> Optional[str]:
        return os.path.join(self.tls_dir, "server.crt") if self.tls else None

    @property
    def server_key(self) -> Optional[str]:
        return os.path.join(self.tls_dir, "server.key") if self.tls else None

    @property
    def pid(self) -> Optional[int]:
        """PID of the running etcd (None when not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return None
        return self.proc.pid if self._is_ours(self.proc.pid) else None

    def _is_ours(self, pid: int) -> bool:
        argv = cmdline(pid)
        return bool(argv) and self.datadir in argv

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------ TLS
    def _make_pki(self) -> None:
        """Throwaway CA, server cert (SAN = IP) and client cert (EC P-256)."""
        if all(os.path.exists(p) for p in (self.ca, self.server_cert,
                                           self.server_key, self.client_cert,
                                           self.client_key)):
            return
        d = self.tls_dir
        os.makedirs(d, mode=0o700, exist_ok=True)
        j = lambda n: os.path.join(d, n)  # noqa: E731
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes"]
        run(["openssl", "req", "-x509", *ec, "-keyout", j("ca.key"),
             "-out", j("ca.crt"), "-days", "7", "-subj", "/CN=ovgt-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        for who, ext in (
                ("server", f"subjectAltName=IP:{self.ip},IP:127.0.0.1\n"
                           "extendedKeyUsage=serverAuth,clientAuth\n"),
                ("client", "extendedKeyUsage=clientAuth\n")):
            with open(j(who + ".ext"), "w") as f:
                f.write("basicConstraints=CA:FALSE\n"
                        "keyUsage=critical,digitalSignature,keyEncipherment\n"
                        + ext)
            run(["openssl", "req", *ec, "-keyout", j(who + ".key"),
                 "-out", j(who + ".csr"), "-subj", f"/CN=ovgt-{who}"])
            run(["openssl", "x509", "-req", "-in", j(who + ".csr"),
                 "-CA", j("ca.crt"), "-CAkey", j("ca.key"),
                 "-CAcreateserial", "-days", "7", "-out", j(who + ".crt"),
                 "-extfile", j(who + ".ext")])
        for n in os.listdir(d):
            os.chmod(j(n), 0o600 if n.endswith(".key") else 0o644)

    # ------------------------------------------------------------ client
    @property
    def client_args(self) -> list:
        """etcdctl flags to reach this server (endpoint + TLS files)."""
        args = ["--endpoints", self.url]
        if self.tls:
            args += ["--cacert", self.ca, "--cert", self.client_cert,
                     "--key", self.client_key]
        return args

    def etcdctl(self, *args, netns: Optional[Netns] = None,
                check: bool = True, timeout: float = 15,
                input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run `etcdctl <client_args> ARGS` inside netns (default: the
        server's own namespace)."""
        ns = netns or self.netns
        argv = [ETCDCTL, *self.client_args, "--command-timeout=5s", *args]
        cp = subprocess.run(ns.exec_argv(argv), capture_output=True,
                            text=True, timeout=timeout, input=input,
                            stdin=None if input is not None
                            else subprocess.DEVNULL,
                            env=dict(_clean_env(), ETCDCTL_API="3"))
        if check and cp.returncode != 0:
            raise CommandError(cp.returncode, argv, cp.stdout, cp.stderr)
        return cp

    def healthy(self, netns: Optional[Netns] = None,
                timeout: float = 2) -> bool:
        """GET <url>/health from inside netns (default: the server's own)
        says health true.  Uses this Python (no curl needed), no proxies."""
        ns = netns or self.netns
        argv = [sys.executable, "-c", _HEALTH_SCRIPT, self.url + "/health",
                str(timeout), self.ca or "", self.client_cert or "",
                self.client_key or ""]
        try:
            cp = subprocess.run(ns.exec_argv(argv), capture_output=True,
                                text=True, timeout=timeout + 5,
                                stdin=subprocess.DEVNULL, env=_clean_env())
        except subprocess.TimeoutExpired:
            return False
        return cp.returncode == 0 and '"health":"true"' in cp.stdout.replace(
            " ", "")

    # ------------------------------------------------------------ lifecycle
    def _argv(self) -> list:
        scheme = self.scheme
        argv = [
            ETCD, "--name", self.name, "--data-dir", self.datadir,
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"ovgt-{self.netns.name}",
            "--heartbeat-interval", "20", "--election-timeout", "200",
        ]
        if scheme == "https":
            argv += ["--cert-file", self.server_cert,
                     "--key-file", self.server_key,
                     "--trusted-ca-file", self.ca,
                     "--client-cert-auth"]
        return argv + self.extra_args

    def start(self, timeout: float = 15) -> "EtcdServer":
        if self.pid:
            return self
        t0 = time.monotonic()
        parent = os.path.dirname(self.datadir)
        os.makedirs(parent, exist_ok=True)
        if self.tls:
            self._make_pki()
        logf = open(self.log_path, "ab")
        try:
            # `ip netns exec` execs etcd: the Popen pid is etcd's own.
            self.proc = subprocess.Popen(
                self.netns.exec_argv(self._argv()), stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=parent, env=_clean_env())
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"etcd exited with {rc}\n--- "
                                   f"{self.log_path} ---\n{self.log_tail()}")
            if self.healthy(timeout=1):
                break
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"etcd at {self.url} not healthy after "
                                   f"{timeout}s\n--- {self.log_path} ---\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        self.timings["start"] = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM by PID, SIGKILL after timeout; idempotent."""
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            terminate([pid], timeout=timeout, verify=self._is_ours,
                      popen=self.proc, what="etcd")
        else:
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID (a crash); the data dir stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self._is_ours(self.proc.pid):
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_gone([self.proc.pid], 5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("etcd pid %s could not be reaped", self.proc.pid)
        self.proc = None

    def restart(self, timeout: float = 15) -> "EtcdServer":
        """stop() then start() on the same data dir (data is kept)."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["EtcdServer"]
