"""Time from Join to forwarding, seen from a container's namespace rather
than taken from the plugin's word.

One namespace host (its own OVS, no dockerd) runs ovsgre; the calls
dockerd would send come from here (as bench.control's FakeDocker does).
A "peer" endpoint sits in a namespace of its own at 198.18.0.2/15.  Each
sample is one container start:

  CreateEndpoint; Join (its call and its reply timed); then what Docker
  does before the container's process runs (the end moves into the
  container's namespace as eth0, gets a 198.18.x.y/15 address, comes up),
  at once followed by ARP requests for the peer, one every millisecond,
  until the first reply.

ARP is what a container sends first.  Each request carries a sender
address of its own slot (198.19.<slot>.1-8), which the peer's reply
echoes as its target; the first request alone has .1, so whether it was
answered is never in doubt: "first probe unanswered" means the very first
request after Join returned got no reply (waited for GRACE_S after a later
one's).  That happens when Join answers before the port forwards, and
also when the veth's host end cannot transmit yet: the kernel lets it
(and sets IFF_RUNNING on it) only once its deferred carrier event has run
after the container end came up, and drops what OVS sends to it before.
So the prober also records whether the host end was running when the
first probe left.  A variant probes from the container end left in the
host's namespace (only brought up), a netlink call after Join returns,
which tests Join's claim more sharply than after the move.  One prober
thread serves every namespace: 32 threads each waking every millisecond
would fight over the two cores and the GIL and blur what is measured.

Measured for one container at a time (ovs-vswitchd settled in between)
and for N containers started at once from N threads (CreateEndpoint +
Join each, then probing from all N namespaces), over a few rounds.  Each
sample is cleaned up as Docker would (the end moves back, Leave,
DeleteEndpoint) so the port count stays bounded.

    sudo .venv/bin/python -m bench.forwarding [--quick] [--samples 30]
        [--parallel 32] [--rounds 3] [--port-type system]

Writes bench/results/forwarding.{json,md} (forwarding-quick.* with
--quick); removes its namespaces and processes even on failure.
"""

import argparse
import concurrent.futures
import errno
import fcntl
import itertools
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from pyroute2 import IPRoute  # noqa: E402
from pyroute2.netns import create_socket  # noqa: E402

from bench.control import NET, FakeDocker, plugin_times  # noqa: E402
from bench.control import settle as vswitchd_settle  # noqa: E402
from bench.stats import summary, write_results  # noqa: E402
from tests.harness import Netns, TestHost  # noqa: E402
from tests.harness.plugin import PluginProcess  # noqa: E402

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
PEER_IP = "198.18.0.2"
PREFIXLEN = 15                # FakeDocker's pool: 198.18.0.0/15
# Sender addresses per slot, 198.19.<slot>.1-8: the first probe alone has
# .1, later ones cycle through the other 7.  Few, because the peer keeps a
# neighbour entry for each, and the kernel's ARP table is shared by every
# namespace on the machine (gc_thresh3, 1,024 by default, counts them all).
TAGS = 8
INTERVAL_S = 0.001            # one ARP request per millisecond
ANSWER_TIMEOUT_S = 5.0        # no reply by then: the sample failed
GRACE_S = 0.1                 # how long a late reply to probe 0 may take
BRIDGE = "br-ovsgre"          # PluginProcess's default bridge
SIOCGIFFLAGS = 0x8913
IFF_RUNNING = 0x40
PORT_TYPE = re.compile(r"ready: .*port type (\S+)")


# -- ARP ---------------------------------------------------------------------

def arp_request(mac, sender_ip, target_ip):
    """Broadcast who-has target_ip, from mac / sender_ip (4-byte strings),
    padded to the 60-byte Ethernet minimum."""
    frame = (BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
             + mac + sender_ip + b"\0" * 6 + target_ip)
    return frame.ljust(60, b"\0")


def arp_reply_tag(frame, mac, peer_ip, tag_prefix):
    """The tag (0..TAGS-1) of a reply from peer_ip to mac whose target
    address is one of this slot's sender addresses; None otherwise."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    if frame[20:22] != b"\x00\x02" or frame[28:32] != peer_ip:
        return None
    if frame[32:38] != mac or frame[38:41] != tag_prefix:
        return None
    tag = frame[41] - 1
    return tag if 0 <= tag < TAGS else None


# -- the prober ---------------------------------------------------------------

class Probe:
    """ARP probing of the peer from one namespace, for one sample."""

    def __init__(self, sock, mac, tag_prefix, peer_ip, host_end=None):
        self.sock, self.mac = sock, mac
        self.tag_prefix, self.peer_ip = tag_prefix, peer_ip
        self.host_end = host_end  # (socket in the host's netns, name)
        self.running_at = None    # first seen IFF_RUNNING, see running()
        self.running_at_first_probe = None
        self.started = self.next_send = 0.0
        self.sent = []            # monotonic time of each probe sent
        self.send_errors = []
        self.first = None         # (tag, monotonic time) of the 1st reply
        self.probe0_answered = False
        self.finish_at = None
        self.done = threading.Event()

    def answered(self, tag, now):
        """Tag 0 is probe 0's alone; the other tags repeat, so which later
        probe a reply answers is not known (only that one was)."""
        if tag >= len(self.sent):
            return                # no probe with this tag yet: stale
        if self.first is None:
            self.first = (tag, now)
            self.finish_at = now + GRACE_S
        if tag == 0:
            self.probe0_answered = True
            self.finish_at = now

    def wake_at(self):
        if self.finish_at is not None:
            return self.finish_at
        return min(self.next_send, self.started + ANSWER_TIMEOUT_S)


class Prober:
    """One thread sends every active probe's ARP requests and reads the
    replies."""

    def __init__(self):
        self._new = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._active = []
        self._stopping = False
        self.error = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="prober")
        self._thread.start()

    def start(self, probe):
        with self._lock:
            self._new.append(probe)
        os.write(self._wake_w, b"x")
        if not self._thread.is_alive():   # failed: nobody would answer
            probe.done.set()
        return probe

    def close(self):
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(10)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self):
        try:
            while not self._stopping:
                self._admit()
                self._send_due(time.monotonic())
                now = time.monotonic()
                wake = min((p.wake_at() for p in self._active), default=None)
                timeout = None if wake is None else max(0.0, wake - now)
                ready, _, _ = select.select(
                    [self._wake_r] + [p.sock for p in self._active], [], [],
                    timeout)
                now = time.monotonic()
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                for probe in self._active:
                    if probe.sock in ready:
                        self._read(probe, now)
                self._expire(now)
        except Exception as exc:  # noqa: BLE001 - waiters must not hang
            self.error = repr(exc)
        finally:
            for probe in self._active + self._new:
                probe.done.set()

    def _admit(self):
        with self._lock:
            new, self._new = self._new, []
        for probe in new:
            _drain(probe.sock)    # a previous sample's late replies
            probe.started = probe.next_send = time.monotonic()
            self._active.append(probe)

    def _send_due(self, now):
        for probe in self._active:
            if probe.first is not None or now < probe.next_send:
                continue
            if probe.host_end and probe.running_at is None \
                    and running(*probe.host_end):
                probe.running_at = time.monotonic()
            if not probe.sent:
                probe.running_at_first_probe = probe.running_at is not None
            tag = tag_of(len(probe.sent))
            frame = arp_request(probe.mac, probe.tag_prefix +
                                bytes([tag + 1]), probe.peer_ip)
            sent_at = time.monotonic()
            try:
                probe.sock.send(frame)
                probe.sent.append(sent_at)
            except OSError as exc:
                probe.send_errors.append(f"{exc.strerror} at "
                                         f"{sent_at - probe.started:.4f} s")
            probe.next_send = sent_at + INTERVAL_S

    def _read(self, probe, now):
        for frame in _frames(probe.sock):
            tag = arp_reply_tag(frame, probe.mac, probe.peer_ip,
                                probe.tag_prefix)
            if tag is not None:
                probe.answered(tag, now)

    def _expire(self, now):
        for probe in list(self._active):
            late = probe.first is None and \
                now - probe.started >= ANSWER_TIMEOUT_S
            if late or (probe.finish_at is not None
                        and now >= probe.finish_at):
                self._active.remove(probe)
                probe.done.set()


def running(sock, ifname):
    """IFF_RUNNING of a link in sock's namespace (an ioctl: no netlink,
    no RTNL lock).  The kernel sets it on the veth's host end in the same
    step (linkwatch, run later from a work queue that needs RTNL) as it
    lets the end transmit after the container end came up: until then
    whatever OVS sends towards the container is dropped silently."""
    ifreq = struct.pack("16s24x", ifname.encode())
    try:
        out = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq)
    except OSError:
        return False
    return bool(struct.unpack_from("H", out, 16)[0] & IFF_RUNNING)


def tag_of(index):
    """Probe 0 has a tag of its own: whether it was answered is never in
    doubt."""
    return 0 if index == 0 else 1 + (index - 1) % (TAGS - 1)


def _frames(sock, limit=1000):
    """What the socket has queued, without blocking.  A packet socket
    whose device left the namespace (the previous sample's eth0) reports
    ENETDOWN once: not an error here."""
    for _ in range(limit):
        try:
            yield sock.recv(256)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                raise


def _drain(sock):
    for _ in _frames(sock):
        pass


def _mac(link):
    return bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))


# -- container namespaces -----------------------------------------------------

class Slot:
    """A container's network namespace, reused by one sample after
    another, with netlink sockets into it and into the host's namespace
    and an ARP packet socket inside it (made once: not in the timings)."""

    def __init__(self, host_ns, name, index):
        self.host_ns = host_ns
        self.ns = Netns(name)
        self.tag_prefix = bytes([198, 19, index])
        self.ipr = self.host_ipr = self.sock = self.host_sock = None
        self.ifindex = None

    def open(self):
        self.ns.create()
        # Docker turns IPv6 off in containers of IPv4-only networks; it
        # also keeps DAD and router solicitations off the bridge.
        self.ns.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"])
        self.host_ipr = IPRoute(netns=self.host_ns.name)
        self.ipr = IPRoute(netns=self.ns.name)
        self.sock = create_socket(netns=self.ns.name,
                                  family=socket.AF_PACKET,
                                  socket_type=socket.SOCK_RAW,
                                  proto=socket.htons(ETH_P_ARP))
        self.sock.setblocking(False)
        # Protocol 0: receives nothing until bound to a link with ARP's
        # (the variant); unbound, it would queue every ARP frame of the
        # host's namespace.  Also the socket the host end is looked at with.
        self.host_sock = create_socket(netns=self.host_ns.name,
                                       family=socket.AF_PACKET,
                                       socket_type=socket.SOCK_RAW, proto=0)
        self.host_sock.setblocking(False)
        return self

    def attach(self, src, address, steps):
        """What Docker does after Join: move the end in as eth0, address
        it, bring it up.  Returns its MAC (6 bytes); steps gets the
        monotonic time after the move and after the rest."""
        index = self.host_ipr.link_lookup(ifname=src)[0]
        fd = os.open(self.ns.path, os.O_RDONLY)
        try:
            self.host_ipr.link("set", index=index, net_ns_fd=fd,
                               ifname="eth0")
        finally:
            os.close(fd)
        steps["moved"] = time.monotonic()
        link = self.ipr.link("get", ifname="eth0")[0]
        self.ifindex = link["index"]
        self.ipr.addr("add", index=self.ifindex, address=address,
                      prefixlen=PREFIXLEN)
        self.ipr.link("set", index=self.ifindex, state="up")
        steps["up"] = time.monotonic()
        self.sock.bind(("eth0", ETH_P_ARP))
        return _mac(link)

    def bring_up_in_host(self, src):
        """For the variant: bring the container end up where CreateEndpoint
        left it, in the host's namespace, without IPv6 (addrgenmode none:
        no link-local address, no DAD, no router solicitation), to probe
        from it there.  Returns its MAC."""
        link = self.host_ipr.link("get", ifname=src)[0]
        self.host_ipr.link("set", index=link["index"], state="up",
                           IFLA_AF_SPEC={"attrs": [("AF_INET6", {"attrs": [
                               ("IFLA_INET6_ADDR_GEN_MODE", 1)]})]})
        self.host_sock.bind((src, ETH_P_ARP))
        return _mac(link)

    def detach(self, src):
        """What Docker does when the container stops: the end goes back
        to the host under its old name (the plugin deletes the pair).
        Nothing to do after the no-move variant."""
        if self.ifindex is None:
            return
        fd = os.open(self.host_ns.path, os.O_RDONLY)
        try:
            self.ipr.link("set", index=self.ifindex, state="down")
            self.ipr.link("set", index=self.ifindex, net_ns_fd=fd,
                          ifname=src)
        finally:
            os.close(fd)
            self.ifindex = None

    def close(self):
        for thing in (self.sock, self.host_sock, self.ipr, self.host_ipr):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - the netns goes anyway
                    pass
        self.ns.delete()


# -- one container start ------------------------------------------------------

class Sample:
    """One container start in one slot: its endpoint, times and probe."""

    def __init__(self, slot, address):
        self.slot, self.address = slot, address
        self.eid = uuid.uuid4().hex + uuid.uuid4().hex
        self.created = False
        self.src = None
        self.t_call = self.t_ret = None
        self.steps = {}           # "moved", "up": monotonic times
        self.probe = None
        self.error = None
        self.diagnosis = None

    def record(self):
        """The sample as JSON: durations in ms from Join's call (t_call)
        and reply (t_ret) to the first reply to a probe."""
        out = {"endpoint": self.eid[:12], "port": self.src,
               "address": self.address}
        if self.t_ret is not None:
            out["join_ms"] = _ms(self.t_ret - self.t_call)
        if self.error or self.probe is None:
            out.update(answered=False, error=self.error or "no probe")
            return out
        probe = self.probe
        out["probes_sent"] = len(probe.sent)
        if probe.sent:
            out["setup_ms"] = _ms(probe.sent[0] - self.t_ret)
        if self.steps:
            out["move_ms"] = _ms(self.steps["moved"] - self.t_ret)
            out["address_up_ms"] = _ms(self.steps["up"] -
                                       self.steps["moved"])
        if probe.send_errors:
            out["send_errors"] = probe.send_errors[:5]
        out["host_end_running_at_first_probe"] = \
            probe.running_at_first_probe
        if probe.running_at is not None:
            out["host_end_running_ms"] = _ms(probe.running_at - self.t_ret)
        if probe.first is None:
            out["answered"] = False
        else:
            tag, at = probe.first
            out.update(answered=True, first_reply_tag=tag,
                       probe0_answered=probe.probe0_answered,
                       call_to_answer_ms=_ms(at - self.t_call),
                       return_to_answer_ms=_ms(at - self.t_ret),
                       probe_to_answer_ms=_ms(at - probe.sent[0]))
        if self.diagnosis:
            out["diagnosis"] = self.diagnosis
        return out


def _ms(seconds):
    return round(seconds * 1000, 3)


def _address(n):
    """The n-th container address: 198.18.1.2 onwards (the peer has
    198.18.0.2; the probes' sender addresses are in 198.19.0.0/16)."""
    return f"198.18.{1 + n // 250}.{n % 250 + 2}"


class Forwarding:
    """The namespace host, the plugin, the peer and the container slots."""

    def __init__(self, port_type, slots, log=print):
        self.host = TestHost("fwd", with_docker=False)
        self.port_type, self.n_slots, self.log = port_type, slots, log
        self.plugin = self.prober = self.peer = None
        self.peer_port = None
        self.slots = []
        self._numbers = itertools.count()

    def start(self):
        self.host.start()
        self.plugin = PluginProcess(
            self.host.netns, os.path.join(self.host.run_dir, "plugin"),
            self.host.ovs.db_remote,
            extra_env={"OVSGRE_PORT_TYPE": self.port_type})
        self.plugin.start()
        FakeDocker(self.plugin).create_network()
        self.prober = Prober()
        name = self.host.name
        self.peer = Slot(self.host.netns, f"{name}-peer", 255)
        self.peer.open()
        for i in range(self.n_slots):
            self.slots.append(Slot(self.host.netns, f"{name}-c{i}", i))
            self.slots[-1].open()
        self._start_peer()
        return self

    def _start_peer(self):
        peer = Sample(self.peer, PEER_IP)
        self._create_endpoint(peer)
        status, reply = self._join(peer)
        if status != 200:
            raise RuntimeError(f"peer's Join answered {status}: {reply}")
        peer.src = reply["InterfaceName"]["SrcName"]
        self.peer.attach(peer.src, PEER_IP, peer.steps)
        self.peer_port = "ovgh" + peer.src[4:]

    def stop(self):
        """Everything this run made, each step on its own so one failure
        leaves nothing else behind."""
        steps = [self.prober.close if self.prober else None,
                 self.plugin.stop if self.plugin else None]
        steps += [slot.close for slot in self.slots + [self.peer] if slot]
        steps.append(self.host.stop)
        for step in filter(None, steps):
            try:
                step()
            except Exception as exc:  # noqa: BLE001
                self.log(f"  cleanup: {step.__qualname__}: {exc!r}")

    def _create_endpoint(self, sample):
        self.plugin.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": NET, "EndpointID": sample.eid, "Options": {},
            "Interface": {"Address": f"{sample.address}/{PREFIXLEN}",
                          "AddressIPv6": "", "MacAddress": ""}})
        sample.created = True

    def _join(self, sample):
        return self.plugin.call("NetworkDriver.Join", {
            "NetworkID": NET, "EndpointID": sample.eid, "Options": {},
            "SandboxKey": sample.slot.ns.path}, timeout=60)

    # -- a sample's life ------------------------------------------------------

    def start_sample(self, slot, barrier=None, move=True):
        """CreateEndpoint, Join, then at once into the namespace and probe;
        not move: the variant (see up_before_join).  Never raises: a
        failure is recorded in the sample."""
        sample = Sample(slot, _address(next(self._numbers)))
        try:
            if barrier is not None:
                barrier.wait(60)  # the N containers start as one burst
            self._create_endpoint(sample)
            if not move:
                mac = self._up_before_join(sample)
            sample.t_call = time.monotonic()
            status, reply = self._join(sample)
            sample.t_ret = time.monotonic()
            if status != 200:
                sample.error = f"Join answered {status}: {reply}"
                return sample
            src = reply["InterfaceName"]["SrcName"]
            if move:
                sample.src = src
                mac = slot.attach(src, sample.address, sample.steps)
            elif src != sample.src:
                raise RuntimeError(f"Join named {src}, not {sample.src}")
            sample.probe = self.prober.start(Probe(
                slot.sock if move else slot.host_sock, mac, slot.tag_prefix,
                socket.inet_aton(PEER_IP),
                (slot.host_sock, "ovgh" + src[4:])))
        except Exception as exc:  # noqa: BLE001
            sample.error = repr(exc)
        return sample

    def _up_before_join(self, sample):
        """The variant: the container end comes up in the host's namespace
        before Join (its name is the plugin's documented ovgc + 11
        characters of the endpoint ID), so the kernel's carrier event for
        the host end has long run when Join returns; probed from there at
        once, a first probe lost could only be OVS not forwarding yet."""
        sample.src = "ovgc" + sample.eid[:11]
        mac = sample.slot.bring_up_in_host(sample.src)
        time.sleep(0.02)          # let the carrier event run before Join
        return mac

    def finish(self, sample):
        """Wait for the sample's probe; look at OVS when the first probe
        went unanswered (afterwards: nothing in the timed path)."""
        if sample.probe is not None:
            sample.probe.done.wait(ANSWER_TIMEOUT_S + GRACE_S + 10)
            if self.prober.error:   # every later sample would fail too
                raise RuntimeError(f"the prober failed: {self.prober.error}")
            lost = sample.probe.first is None or \
                not sample.probe.probe0_answered
            if lost:
                sample.diagnosis = self._diagnose(sample)
        return sample.record()

    def _diagnose(self, sample):
        port = "ovgh" + sample.src[4:]
        shown = self.host.ovs.appctl("ovs-vswitchd", "dpif/show",
                                     check=False)
        return {"ofport_now": self.host.ovs.vsctl(
                    "get", "Interface", port, "ofport", check=False).strip(),
                "in_datapath_now": bool(re.search(
                    rf"\b{port} \d+/", shown or "")),
                "seconds_after_join": round(
                    time.monotonic() - sample.t_ret, 3),
                "prober_error": self.prober.error}

    def stop_sample(self, sample):
        """As Docker stops a container: the end back, Leave,
        DeleteEndpoint.  Never raises (the next sample needs the slot)."""
        try:
            sample.slot.detach(sample.src)
        except Exception as exc:  # noqa: BLE001
            self.log(f"  moving {sample.src} back failed: {exc!r}")
            self._drop_eth0(sample.slot)
        if not sample.created:
            return
        body = {"NetworkID": NET, "EndpointID": sample.eid}
        for call in ("NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"):
            try:
                status, reply = self.plugin.call(call, body)
                if status != 200:
                    self.log(f"  {call} answered {status}: {reply}")
            except OSError as exc:
                self.log(f"  {call} failed: {exc!r}")

    def _drop_eth0(self, slot):
        """A slot must not keep an eth0: the next end could not take the
        name.  Deleting it deletes the pair."""
        try:
            for index in slot.ipr.link_lookup(ifname="eth0"):
                slot.ipr.link("del", index=index)
        except Exception as exc:  # noqa: BLE001
            self.log(f"  deleting eth0 in {slot.ns.name} failed: {exc!r}")
        slot.ifindex = None

    def settle(self, timeout=60):
        """Wait until the plugin's reaper has taken the stopped samples'
        ports off the bridge and ovs-vswitchd has let go of them: every
        sample (every round) starts on a bridge holding only the peer."""
        deadline = time.monotonic() + timeout
        while set(self.host.ovs.vsctl("list-ports", BRIDGE).split()) \
                - {self.peer_port}:
            if time.monotonic() > deadline:
                raise RuntimeError("the stopped samples' ports stayed on "
                                   f"{BRIDGE} for {timeout} s")
            time.sleep(0.05)
        vswitchd_settle(self.host, timeout)

    # -- the scenarios --------------------------------------------------------

    def one_at_a_time(self, samples, move=True):
        """Samples one after another on a settled bridge; returns (sample
        records, plugin-logged Join durations)."""
        slot = self.slots[0]
        # One sample first, not recorded: the plugin's first Join and cold
        # caches are not what a running host sees.
        warm = self.start_sample(slot, move=move)
        self.log(f"    warm-up: {self.finish(warm)}")
        self.stop_sample(warm)
        self.settle()
        offset = os.path.getsize(self.plugin.log_path)
        records = []
        for i in range(samples):
            sample = self.start_sample(slot, move=move)
            records.append(self.finish(sample))
            self.stop_sample(sample)
            self.settle()
            if (i + 1) % 10 == 0 or i + 1 == samples:
                self.log(f"    {i + 1}/{samples} done")
        return records, plugin_times(self.plugin.log_path, offset, "Join")

    def together(self, count, rounds):
        """`count` samples started at once from `count` threads, `rounds`
        times; returns (sample records, plugin-logged Join durations)."""
        slots = self.slots[:count]
        offset = os.path.getsize(self.plugin.log_path)
        records = []
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            for r in range(rounds):
                barrier = threading.Barrier(count)
                started = list(pool.map(
                    lambda s: self.start_sample(s, barrier), slots))
                records += [self.finish(s) for s in started]
                list(pool.map(self.stop_sample, started))
                self.settle()
                self.log(f"    round {r + 1}/{rounds} done")
        return records, plugin_times(self.plugin.log_path, offset, "Join")

    def plugin_port_type(self):
        with open(self.plugin.log_path, errors="replace") as fh:
            match = PORT_TYPE.search(fh.read())
        return match.group(1) if match else "unknown"


# -- results ------------------------------------------------------------------

METRICS = ("join_ms", "call_to_answer_ms", "return_to_answer_ms",
           "setup_ms", "move_ms", "address_up_ms", "probe_to_answer_ms")
# (key in the results, row title); "together" gets its title in markdown()
SCENARIOS = (("one_at_a_time", "1 at a time"),
             ("up_before_join", "1 at a time, end up before Join, probed "
              "where it is (no move)"),
             ("together", None))


def summarise(records, plugin_joins):
    """p50/p99 of each duration over the answered samples (Join over all
    samples whose Join answered), the plugin's own Join times, and every
    sample whose first probe (or every probe) went unanswered."""
    answered = [r for r in records if r.get("answered")]
    out = {m: summary([r[m] for r in answered if m in r]) for m in METRICS}
    out["join_ms"] = summary([r["join_ms"] for r in records
                              if "join_ms" in r])
    out["plugin_join_ms"] = summary(plugin_joins)
    out["samples"] = len(records)
    out["answered"] = len(answered)
    out["first_probe_unanswered"] = sum(
        1 for r in answered if not r["probe0_answered"])
    early = [r for r in answered
             if r.get("host_end_running_at_first_probe") is False]
    out["first_probe_before_host_end_running"] = len(early)
    out["first_probe_unanswered_before_host_end_running"] = sum(
        1 for r in early if not r["probe0_answered"])
    out["unanswered"] = len(records) - len(answered)
    out["anomalies"] = [r for r in records if not r.get("answered")
                        or not r["probe0_answered"]]
    out["records"] = records
    return out


def run(log=print, quick=False, samples=None, parallel=None, rounds=None,
        port_type="system"):
    """Both scenarios on one namespace host; a JSON-able dict."""
    samples = samples or (5 if quick else 30)
    parallel = parallel or (8 if quick else 32)
    rounds = rounds or (1 if quick else 3)
    if not 0 < parallel <= 250:
        raise ValueError("parallel: 1 to 250 (one 198.19.<slot>.0/24 of "
                         "probe addresses each)")
    bench = Forwarding(port_type, parallel, log)
    try:
        bench.start()
        log(f"  host {bench.host.name}: plugin up, peer at {PEER_IP}, "
            f"{parallel} container namespaces")
        log(f"  one container at a time, {samples} samples")
        one = summarise(*bench.one_at_a_time(samples))
        log(f"  one at a time, end up before Join, no move, {samples} "
            "samples")
        still = summarise(*bench.one_at_a_time(samples, move=False))
        log(f"  {parallel} containers at once, {rounds} rounds")
        many = summarise(*bench.together(parallel, rounds))
        result = {"port_type": port_type,
                  "plugin_port_type": bench.plugin_port_type(),
                  "probe_interval_ms": INTERVAL_S * 1000,
                  "answer_timeout_s": ANSWER_TIMEOUT_S,
                  "quick": quick, "one_at_a_time": one,
                  "up_before_join": still,
                  "together": dict(many, containers=parallel,
                                   rounds=rounds)}
    finally:
        bench.stop()
    for name, _ in SCENARIOS:
        part = result[name]
        log(f"  {name}: Join p50 {part['join_ms']['p50']} ms, Join return "
            f"-> first reply p50 {part['return_to_answer_ms']['p50']} / "
            f"p99 {part['return_to_answer_ms']['p99']} ms, first probe "
            f"unanswered {part['first_probe_unanswered']}, no reply "
            f"{part['unanswered']}")
    return result


def _pair(stats):
    if stats["p50"] is None:
        return "–"
    return f"{stats['p50']} / {stats['p99']}"


def markdown(result):
    titles = dict(SCENARIOS, together=(
        f"{result['together']['containers']} at once "
        f"({result['together']['rounds']} rounds)"))
    lines = ["| containers started | samples | Join ms (caller) | Join ms "
             "(plugin log) | Join call → first reply ms | Join reply → "
             "first reply ms | Join reply → end moved ms | address, up ms "
             "| Join reply → first probe ms | first probe → reply ms "
             "(max) | first probe sent before the host end ran | first "
             "probe unanswered (of which before it ran) | no reply |",
             "|---" * 13 + "|"]
    for key, _ in SCENARIOS:
        part = result[key]
        lines.append(
            f"| {titles[key]} | {part['samples']} | "
            f"{_pair(part['join_ms'])} | {_pair(part['plugin_join_ms'])} | "
            f"{_pair(part['call_to_answer_ms'])} | "
            f"{_pair(part['return_to_answer_ms'])} | "
            f"{_pair(part['move_ms'])} | {_pair(part['address_up_ms'])} | "
            f"{_pair(part['setup_ms'])} | "
            f"{_pair(part['probe_to_answer_ms'])} "
            f"({part['probe_to_answer_ms']['max']}) | "
            f"{part['first_probe_before_host_end_running']} | "
            f"{part['first_probe_unanswered']} ("
            f"{part['first_probe_unanswered_before_host_end_running']}) | "
            f"{part['unanswered']} |")
    lines += ["", "Cells are p50 / p99.  Probes: one ARP request every "
              f"{result['probe_interval_ms']:g} ms for a peer container "
              "from the new container's namespace, sent right after the "
              "end was moved there as eth0, addressed and brought up (what "
              "Docker does after Join); in the \"end up before Join\" row, "
              "from the container end left in the host's namespace and "
              "brought up before Join was called, at Join's return: the "
              "sharpest test of Join's claim.  \"First "
              "probe unanswered\": the first request after Join returned "
              f"got no reply (waited for {GRACE_S * 1000:g} ms after a "
              f"later one's); \"no reply\": none in "
              f"{result['answer_timeout_s']:g} s.  \"Before the host end "
              "ran\": the veth's host end was not yet IFF_RUNNING when the "
              "first probe left: the kernel lets it transmit (towards the "
              "container) only once its deferred carrier event has run, "
              "after the container end came up; frames OVS sends to it "
              "before that are dropped.  Port type "
              f"{result['plugin_port_type']}."]
    for key, _ in SCENARIOS:
        for rec in result[key]["anomalies"]:
            lines.append(f"- {titles[key]}: endpoint {rec['endpoint']} "
                         f"({rec.get('port')}): {_anomaly(rec)}")
    return "\n".join(lines) + "\n"


def _anomaly(rec):
    if not rec.get("answered"):
        return (f"no reply ({rec.get('error') or 'timeout'}; "
                f"{rec.get('probes_sent', 0)} probes; "
                f"{rec.get('diagnosis')})")
    ran = rec.get("host_end_running_ms")
    return (f"first probe unanswered, first reply (to one of the "
            f"{rec['probes_sent']} probes sent by then) "
            f"{rec['return_to_answer_ms']} ms after Join returned "
            f"(Join {rec['join_ms']} ms; first probe "
            f"{rec.get('setup_ms')} ms after Join returned, host end "
            + ("running by then" if rec.get("host_end_running_at_first_probe")
               else f"not running yet (running {ran} ms after Join "
               "returned)" if ran is not None else "not running yet")
            + f"; {rec.get('diagnosis')})")


def _on_sigterm(main_pid):
    """SIGTERM runs the clean-up too (as Ctrl-C does), but only in this
    process: pyroute2 forks helpers to open sockets in a namespace and
    ends them with SIGTERM; a fork that ran the handler would unwind into
    a copy of run() and tear down the live run."""
    def handler(*_):
        if os.getpid() != main_pid:
            os._exit(143)
        sys.exit(143)
    return handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few samples (a smoke run, not numbers to "
                        "quote)")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--port-type", default="system")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark builds network namespaces")
    signal.signal(signal.SIGTERM, _on_sigterm(os.getpid()))
    result = run(lambda msg: print(msg, flush=True), args.quick,
                 args.samples, args.parallel, args.rounds, args.port_type)
    # a smoke run never replaces the published numbers
    write_results("forwarding-quick" if args.quick else "forwarding",
                  result, markdown(result))


if __name__ == "__main__":
    main()
