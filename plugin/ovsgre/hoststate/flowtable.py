"""OpenFlow tables as `ovs-ofctl dump-flows` prints them, compared with
what `build_flows` computes."""

import re

_STATS = {"cookie", "duration", "n_packets", "n_bytes", "idle_age",
          "hard_age", "reset_counts", "packet_count", "byte_count"}
_NUMBER = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")


def _split_top(text):
    """Split on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _num(text):
    return str(int(text, 0)) if _NUMBER.match(text) else text


def _norm_action(action):
    name, sep, arg = action.partition(":")
    if name == "mod_vlan_vid" and _NUMBER.match(arg):
        # OpenFlow 1.3 shows mod_vlan_vid as push_vlan + set_field
        return ["push_vlan:0x8100",
                f"set_field:{int(arg, 0) | 0x1000}->vlan_vid"]
    if name == "strip_vlan":
        return ["pop_vlan"]
    if name == "set_field" and "->" in arg:
        value, _, field = arg.partition("->")
        return [f"set_field:{_num(value)}->{field}"]
    if name == "push_vlan":
        return [f"push_vlan:{hex(int(arg, 0))}" if _NUMBER.match(arg)
                else action]
    if sep and name in ("output", "goto_table"):
        return [f"{name}:{_num(arg)}"]
    return [action]


def normalize_flow(text):
    """One flow as built by build_flows or printed by dump-flows -> a
    canonical string: stats dropped, table=0 explicit, match fields sorted,
    numbers in decimal, OpenFlow-1.3 spellings of VLAN actions."""
    text = text.strip()
    if " actions=" in text:
        match, actions = text.split(" actions=", 1)
    elif ",actions=" in text:
        match, actions = text.split(",actions=", 1)
    elif text.startswith("actions="):
        match, actions = "", text[len("actions="):]
    else:
        raise ValueError(f"not a flow: {text!r}")
    fields = {}
    for part in match.replace(" ", ",").split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if key in _STATS:
            continue
        fields[key] = _num(value) if sep else ""
    table = fields.pop("table", "0")
    priority = fields.pop("priority", "32768")
    matches = ",".join(f"{k}={v}" if v != "" else k
                       for k, v in sorted(fields.items()))
    acts = []
    for action in _split_top(actions):
        acts += _norm_action(action)
    head = f"table={table},priority={priority}"
    return f"{head},{matches} actions={','.join(acts)}" if matches \
        else f"{head} actions={','.join(acts)}"


def is_learned(normalized):
    """Flows the learn() action adds in table 2 at priority 1."""
    return normalized.startswith("table=2,priority=1,") or \
        normalized.startswith("table=2,priority=1 ")


def parse_dump(text):
    """Flow lines of `ovs-ofctl dump-flows` (header lines skipped)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and "actions=" in line
            and not line.startswith(("OFPST_", "NXST_"))]


def compare_flows(expected, actual):
    """(missing, unexpected): normalized flows of the computed table not
    installed, and installed ones not in it (learned flows ignored)."""
    want = {normalize_flow(f) for f in expected}
    have = set()
    for flow in actual:
        norm = normalize_flow(flow)
        if not is_learned(norm):
            have.add(norm)
    return sorted(want - have), sorted(have - want)

