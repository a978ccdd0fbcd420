"""Key-value stores for cluster state: the interface and the local one.

Keys are paths ("/ovsgre/networks/blue"), values JSON-able objects.  Both
implementations give the same guarantees to callers:

- ``create(key, value)`` is atomic create-if-absent (returns False if the
  key exists) -- the building block for allocation without duplicates;
- ``replace(key, old, new)`` is compare-and-swap on the whole value;
- ``write_if_unchanged(prefix, revision, key, old, new)`` writes one key
  only if nothing under ``prefix`` changed since ``list_with_revision``
  read it: a decision about many keys (no overlapping subnets) made
  atomic with the write that depends on it;
- every call either completes or raises ``Unavailable`` within a bound.

``LocalKV`` serves one host (no etcd): one JSON file per key under the
state directory, written crash-safely like the local store.
"""

import json
import os
import threading
import urllib.parse

from ..errors import Unavailable
from ..store import atomic_write, fsync_dir

PREFIX = "/ovsgre/"
CAS_TRIES = 50
RETRY = object()   # what an attempt returns when it lost a race


def compare_and_swap(what, attempt, tries=CAS_TRIES):
    """Run attempt() (read, decide, conditional write) until it returns
    anything but RETRY; other hosts writing the same keys make it lose
    races, never forever: Unavailable naming `what` after `tries`."""
    for _ in range(tries):
        result = attempt()
        if result is not RETRY:
            return result
    raise Unavailable(f"{what}: too much contention, try again")


def _copy(value):
    return json.loads(json.dumps(value)) if value is not None else None


class LocalKV:
    shared = False   # other hosts do not see this store

    def __init__(self, state_dir):
        self.root = os.path.join(os.path.abspath(state_dir), "kv")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._data = self._load()
        self._revision = 0          # of this process's view: one per change
        self._modified = {}         # existing key -> revision of its write

    def _load(self):
        data = {}
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith(".tmp-"):
                os.unlink(path)
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    data[urllib.parse.unquote(name)] = json.load(fh)
            except (OSError, ValueError):
                continue
        return data

    def _path(self, key):
        return os.path.join(self.root, urllib.parse.quote(key, safe=""))

    def _write(self, key, value):
        atomic_write(self._path(key), json.dumps(value).encode())
        self._data[key] = value
        self._revision += 1
        self._modified[key] = self._revision

    def get(self, key):
        with self._lock:
            return _copy(self._data.get(key))

    def list(self, prefix):
        with self._lock:
            return {k: _copy(v) for k, v in self._data.items()
                    if k.startswith(prefix)}

    def list_with_revision(self, prefix):
        with self._lock:
            return ({k: _copy(v) for k, v in self._data.items()
                     if k.startswith(prefix)}, self._revision)

    def write_if_unchanged(self, prefix, revision, key, old, new):
        """Write key := new if its value is still old (None: absent) and
        no key under prefix was written after revision (as with etcd, a
        deletion there only ever removes a reason to refuse)."""
        with self._lock:
            if any(r > revision for k, r in self._modified.items()
                   if k.startswith(prefix)) or self._data.get(key) != old:
                return False
            self._write(key, new)
            return True

    def put(self, key, value):
        with self._lock:
            self._write(key, value)

    def create(self, key, value):
        with self._lock:
            if key in self._data:
                return False
            self._write(key, value)
            return True

    def replace(self, key, old, new):
        with self._lock:
            if self._data.get(key) != old:
                return False
            self._write(key, new)
            return True

    def delete_if(self, key, old):
        """Delete only if the value is still `old` (compare-and-delete)."""
        with self._lock:
            if key not in self._data or self._data[key] != old:
                return False
            self._remove(key)
            return True

    def delete(self, key):
        with self._lock:
            if key in self._data:
                self._remove(key)

    def _remove(self, key):
        del self._data[key]
        self._modified.pop(key, None)      # bounded by the keys that exist
        self._revision += 1
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        fsync_dir(self.root)

    def close(self):
        pass
