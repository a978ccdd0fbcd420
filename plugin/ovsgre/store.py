"""The embedded local store: one JSON file per record, written crash-safely.

Layout: ``STATE_DIR/<kind>/<id>.json``.  A write goes to a temporary file in
the same directory, is fsync'ed, renamed over the old file and the directory
is fsync'ed: after a crash a record is either the old or the new version,
never a torn one.  One file per record keeps a write O(1) however many
endpoints a host has.  Records are cached in memory; the plugin holds an
exclusive lock on the directory so two plugins never share it.
"""

import fcntl
import json
import logging
import os
import re
import threading
import time

from .errors import Unavailable
from .records import ENDPOINTS, NETWORKS, problems

LOG = logging.getLogger(__name__)

KINDS = (NETWORKS, ENDPOINTS)
LOCK_WAIT = 10  # seconds
QUARANTINE = "quarantine"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

class LocalStore:
    def __init__(self, state_dir, lock=True, lock_wait=None,
                 validate=False):
        """validate: set malformed records aside (the plugin's own store;
        see _set_aside)."""
        self.root = os.path.abspath(state_dir)
        self._validate = validate
        self._mutex = threading.Lock()
        self._cache = {}
        self._lock_fd = None
        for kind in KINDS:
            os.makedirs(os.path.join(self.root, kind), mode=0o700,
                        exist_ok=True)
        if lock:
            self._take_lock(LOCK_WAIT if lock_wait is None else lock_wait)
        for kind in KINDS:
            self._cache[kind] = self._load(kind)

    def _take_lock(self, wait=LOCK_WAIT):
        """Exclusive lock; waits a little for a dying predecessor (a worker
        orphaned by a killed master exits within a second or two)."""
        fd = os.open(os.path.join(self.root, "lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Unavailable(f"state directory {self.root} is in "
                                      "use by another ovsgre process")
                time.sleep(0.1)
        self._lock_fd = fd

    def close(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, kind, key):
        if kind not in KINDS or not _ID.fullmatch(key) or key.startswith("."):
            raise ValueError(f"bad store key {kind}/{key!r}")
        return os.path.join(self.root, kind, key + ".json")

    def _load(self, kind):
        records = {}
        folder = os.path.join(self.root, kind)
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name.startswith(".tmp-"):
                os.unlink(path)  # left by a crash between write and rename
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    record = json.load(fh)
            except (OSError, ValueError) as exc:
                LOG.error("ignoring unreadable record %s: %s", path, exc)
                continue
            if not isinstance(record, dict):
                LOG.error("ignoring record %s: not a JSON object", path)
                continue
            found = problems(kind, record) if self._validate else []
            if found:
                self._set_aside(path, found)
                continue
            records[name[:-5]] = record
        return records

    def _set_aside(self, path, problems):
        """A record the plugin cannot use (edited by hand, or written by
        something else) must not stop it from starting: the plugin's own
        store moves it to quarantine/, where an operator finds it; readers
        (status, doctor) only leave it out."""
        if self._lock_fd is None:
            return
        folder = os.path.join(self.root, QUARANTINE)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        kind = os.path.basename(os.path.dirname(path))
        target = os.path.join(folder, f"{kind}-{os.path.basename(path)}")
        os.replace(path, target)
        LOG.error("record %s is malformed (%s): moved to %s", path,
                  "; ".join(problems), target)

    def get(self, kind, key):
        with self._mutex:
            record = self._cache[kind].get(key)
            return dict(record) if record is not None else None

    def list(self, kind):
        with self._mutex:
            return {k: dict(v) for k, v in self._cache[kind].items()}

    def put(self, kind, key, record, durable=True):
        """Write a record.  durable=False skips the fsyncs: the record is
        still replaced atomically and survives a crash of the plugin, but
        a power loss may bring back the previous version; only for changes
        the reconciler copes with either way (Join/Leave state)."""
        path = self._path(kind, key)
        data = json.dumps(record, sort_keys=True).encode()
        with self._mutex:
            atomic_write(path, data, durable)
            self._cache[kind][key] = dict(record)

    def delete(self, kind, key):
        path = self._path(kind, key)
        with self._mutex:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            else:
                fsync_dir(os.path.dirname(path))
            self._cache[kind].pop(key, None)


def atomic_write(path, data, durable=True):
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, ".tmp-" + os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(folder)


def fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
