"""The plugin's local store, read file by file: no lock taken, no directory
created, no temporary file removed (the running plugin owns them)."""

import json
import os

from ..records import problems
from ..store import KINDS
from .command import ProbeError
from .records import Store


def read_store(state_dir) -> Store:
    """{"networks": {id: record}, "endpoints": {id: record}, "bad": [path],
    "malformed": [{kind, id, path, problems, record}]} read without locking
    or writing anything.  Malformed records (see records.problems) are kept out
    of networks/endpoints.  ProbeError when the directory or one of its
    kinds cannot be listed."""
    root = os.path.abspath(state_dir)
    if not os.path.isdir(root):
        raise ProbeError(f"state directory {root} does not exist")
    out = {"bad": [], "malformed": []}
    for kind in KINDS:
        folder = os.path.join(root, kind)
        records = {}
        try:
            entries = sorted(os.listdir(folder))
        except FileNotFoundError:
            entries = []   # a plugin that never stored this kind yet
        except OSError as exc:
            raise ProbeError(f"cannot list {folder}: {exc}") from exc
        for name in entries:
            if not name.endswith(".json") or name.startswith(".tmp-"):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    record = json.load(fh)
            except FileNotFoundError:
                continue   # deleted between listdir and open
            except (OSError, ValueError) as exc:
                out["bad"].append(f"{path}: {exc}")
                continue
            if not isinstance(record, dict):
                out["bad"].append(f"{path}: not a JSON object")
                continue
            found = problems(kind, record)
            if found:
                out["malformed"].append({"kind": kind, "id": name[:-5],
                                         "path": path, "problems": found,
                                         "record": record})
                continue
            records[name[:-5]] = record
        out[kind] = records
    return out

