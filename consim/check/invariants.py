"""Raft and gossip invariants, checked from the cluster's event log after a ``consim check`` run.

The servers record (``ServerNode.record_applies``, DEBUG events) every entry they apply
(``applied``: index, term, a hash of the entry, the commit index, the KV operation), every state
machine restore (``fsm_restored``) and, on becoming leader, their log's terms (``leader_log``);
Raft itself logs ``election_won`` with the term. From those:

- ``election_safety``: at most one leader per term;
- ``state_machine_safety``: every server applied the same entry at each index (across restarts);
- ``leader_completeness``: an entry applied (so committed) before a leader was elected is in that
  leader's log, with the same term;
- ``monotonic_indexes``: within one incarnation of a server, the applied index only moves forward,
  one by one (or jumps forward to a restored snapshot), and the commit index never goes back. A
  restart from storage starts a new incarnation, which re-applies from its snapshot: allowed;
- ``acknowledged_writes``: every write or cas the history says succeeded was applied at some
  index, and every server that ended the run caught up to the last index holds, for every key,
  the value of the last write to it in the log (checked against its final local read);
- ``gossip_convergence``: after the heal, every running server's LAN view lists every running
  server as alive, and all keyrings (LAN and WAN) hold the same keys and primary;
- ``keyring_acceptance``: no server accepted a gossip packet under a key it did not have
  installed (``gossip_accepted`` events carry the key's fingerprint, when the gossip layer
  reports it; without such events the check has nothing to look at and says so).

Each checker takes plain data (event dicts as ``Event.to_json()`` gives them, operations from the
history) and returns an :class:`InvariantResult`, so a crafted bad log can be fed to each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_VIOLATIONS = 10


@dataclass
class InvariantResult:
    name: str
    ok: bool
    checked: int = 0  # how many facts the check looked at
    violations: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "checked": self.checked,
            "violations": self.violations,
            "note": self.note,
        }


def _result(name: str, checked: int, violations: list[str], note: str = "") -> InvariantResult:
    shown = violations[:MAX_VIOLATIONS]
    if len(violations) > MAX_VIOLATIONS:
        shown.append(f"... and {len(violations) - MAX_VIOLATIONS} more")
    return InvariantResult(name, not violations, checked, shown, note)


def _events(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [e if isinstance(e, dict) else e.to_json() for e in events]


# ---- Raft -------------------------------------------------------------------------------------
def election_safety(events: Iterable[Any]) -> InvariantResult:
    leaders: dict[int, list[tuple[str, float]]] = {}
    for e in _events(events):
        if e["kind"] == "election_won":
            leaders.setdefault(int(e["fields"]["term"]), []).append((e["node"], e["time"]))
    violations = []
    for term, won in sorted(leaders.items()):
        nodes = sorted({n for n, _ in won})
        if len(nodes) > 1:
            when = ", ".join(f"{n} at {t:.3f}s" for n, t in won)
            violations.append(f"term {term} has {len(nodes)} leaders: {when}")
    return _result("election_safety", len(leaders), violations)


def state_machine_safety(events: Iterable[Any]) -> InvariantResult:
    first: dict[int, tuple[int, str, str, float]] = {}  # index -> (term, hash, node, time)
    violations = []
    checked = 0
    for e in _events(events):
        if e["kind"] != "applied":
            continue
        f = e["fields"]
        checked += 1
        index, term, digest = int(f["index"]), int(f["term"]), str(f["hash"])
        seen = first.get(index)
        if seen is None:
            first[index] = (term, digest, e["node"], e["time"])
        elif (seen[0], seen[1]) != (term, digest):
            violations.append(
                f"index {index}: {seen[2]} applied term {seen[0]} entry {seen[1]} at "
                f"{seen[3]:.3f}s, {e['node']} applied term {term} entry {digest} at "
                f"{e['time']:.3f}s"
            )
    return _result("state_machine_safety", checked, violations)


def leader_completeness(events: Iterable[Any]) -> InvariantResult:
    committed: dict[int, tuple[int, float]] = {}  # index -> (term, first applied time)
    violations = []
    checked = 0
    for e in _events(events):
        f = e["fields"]
        if e["kind"] == "applied":
            committed.setdefault(int(f["index"]), (int(f["term"]), e["time"]))
        elif e["kind"] == "leader_log":
            snapshot_index = int(f["snapshot_index"])
            terms: dict[int, int] = {}
            for lo, hi, term in f["runs"]:
                for i in range(int(lo), int(hi) + 1):
                    terms[i] = int(term)
            for index, (term, _) in committed.items():
                if index <= snapshot_index:
                    continue  # compacted into the leader's snapshot: applied there
                checked += 1
                has = terms.get(index)
                if has != term:
                    what = "lacks it" if has is None else f"has term {has} there"
                    violations.append(
                        f"{e['node']} became leader of term {f['term']} at {e['time']:.3f}s: "
                        f"index {index} (term {term}) was committed before, its log {what}"
                    )
    return _result("leader_completeness", checked, violations)


def monotonic_indexes(events: Iterable[Any]) -> InvariantResult:
    applied: dict[tuple[str, int], int] = {}
    commit: dict[tuple[str, int], int] = {}
    violations = []
    checked = 0
    for e in _events(events):
        f = e["fields"]
        if e["kind"] not in ("applied", "fsm_restored"):
            continue
        who = (e["node"], int(f.get("incarnation", 0)))
        index = int(f["index"])
        checked += 1
        last = applied.get(who)
        if e["kind"] == "fsm_restored":
            if last is not None and index < last:
                violations.append(
                    f"{e['node']} (incarnation {who[1]}) restored a snapshot at {index} after "
                    f"applying {last} ({e['time']:.3f}s)"
                )
            applied[who] = max(index, last or 0)
            continue
        if last is not None and index != last + 1:
            violations.append(
                f"{e['node']} (incarnation {who[1]}) applied index {index} after {last} "
                f"at {e['time']:.3f}s"
            )
        applied[who] = index if last is None else max(index, last)
        c = int(f.get("commit", 0))
        previous = commit.get(who, 0)
        if c < previous:
            violations.append(
                f"{e['node']} (incarnation {who[1]}) commit index went back from {previous} "
                f"to {c} at {e['time']:.3f}s"
            )
        if c < index:
            violations.append(
                f"{e['node']} applied index {index} beyond its commit index {c} at {e['time']:.3f}s"
            )
        commit[who] = max(c, previous)
    return _result("monotonic_indexes", checked, violations)


def acknowledged_writes(
    events: Iterable[Any],
    operations: Iterable[Any],
    final_local: dict[str, dict[str, Any]],
) -> InvariantResult:
    """``operations``: the history's operations (``f``, ``key``, ``value``, ``type``);
    ``final_local``: each server's final local (stale) read of every key."""
    from consim.check.workload import decode_value

    log: dict[int, dict[str, Any]] = {}  # index -> applied fields (first seen)
    last_applied: dict[str, tuple[int, int]] = {}  # node -> (incarnation, applied index)
    for e in _events(events):
        f = e["fields"]
        if e["kind"] == "applied":
            log.setdefault(int(f["index"]), f)
        if e["kind"] in ("applied", "fsm_restored"):
            inc = int(f.get("incarnation", 0))
            prev = last_applied.get(e["node"])
            if prev is None or inc > prev[0] or (inc == prev[0] and int(f["index"]) > prev[1]):
                last_applied[e["node"]] = (inc, int(f["index"]))
    written: dict[tuple[str, Any], int] = {}  # (key, value) -> index of a successful write
    for index, f in sorted(log.items()):
        if f.get("op") in ("set", "cas") and f.get("result") is not False:
            written.setdefault((f.get("key"), _value(f.get("value"), decode_value)), index)
    violations = []
    checked = 0
    for op in operations:
        if op.type != "ok" or op.f not in ("write", "cas"):
            continue
        checked += 1
        value = op.value if op.f == "write" else op.value[1]
        if (op.key, value) not in written:
            violations.append(
                f"acknowledged {op.f} of {value!r} to {op.key} (process {op.process}, "
                f"ok at {op.complete_time:.3f}s) is in no server's applied log"
            )
    # Final state: a server's local value is the last logged write to the key up to its index.
    top = max(log) if log else 0
    for server, values in sorted(final_local.items()):
        inc_index = last_applied.get(server)
        if inc_index is None or inc_index[1] < top:
            continue  # not caught up (the convergence check reports that)
        for key, got in sorted(values.items()):
            expect = None
            for _index, f in sorted(log.items()):
                if (
                    f.get("key") == key
                    and f.get("op") in ("set", "cas")
                    and f.get("result") is not False
                ):
                    expect = _value(f.get("value"), decode_value)
            checked += 1
            if got != expect:
                violations.append(
                    f"{server} holds {got!r} for {key} at the end; the log's last write is {expect!r}"
                )
    return _result("acknowledged_writes", checked, violations)


def _value(raw: Any, decode: Any) -> Any:
    if isinstance(raw, str):
        return decode(raw.encode())
    return raw


def replicas_converge(
    final_local: dict[str, dict[str, Any]], applied_index: dict[str, int]
) -> InvariantResult:
    """After the quiet period every running server has the same applied index and values."""
    violations = []
    indexes = {s: i for s, i in applied_index.items() if s in final_local}
    if len(set(indexes.values())) > 1:
        violations.append(f"applied indexes differ after the quiet period: {indexes}")
    views = {s: tuple(sorted(v.items())) for s, v in final_local.items()}
    if len(set(views.values())) > 1:
        violations.append(f"local values differ after the quiet period: {final_local}")
    return _result("replicas_converge", len(final_local), violations)


# ---- gossip -----------------------------------------------------------------------------------
def gossip_convergence(
    views: dict[str, dict[str, str]], keyrings: dict[str, dict[str, Any]]
) -> InvariantResult:
    """``views``: running server -> {member name: status} in its LAN pool; ``keyrings``: server ->
    {"lan": {"keys": [...], "primary": fp}, "wan": {...}}."""
    violations = []
    running = sorted(views)
    for server in running:
        for other in running:
            status = views[server].get(other)
            if status != "alive":
                violations.append(f"{server} sees {other} as {status or 'unknown'} after the heal")
    for pool in ("lan", "wan"):
        rings = {
            s: (tuple(sorted(k[pool]["keys"])), k[pool]["primary"])
            for s, k in keyrings.items()
            if pool in k
        }
        if len(set(rings.values())) > 1:
            violations.append(f"{pool} keyrings differ after the heal: {rings}")
    return _result("gossip_convergence", len(running), violations)


def keyring_acceptance(events: Iterable[Any]) -> InvariantResult:
    installed: dict[str, set[str]] = {}
    violations = []
    checked = 0
    for e in _events(events):
        f = e["fields"]
        if e["kind"] == "keyring_state":
            installed[e["node"]] = set(f.get("keys", []))
        elif e["kind"] == "gossip_accepted" and f.get("key"):
            checked += 1
            keys = installed.get(e["node"])
            if keys is not None and f["key"] not in keys:
                violations.append(
                    f"{e['node']} accepted a packet under key {f['key']} at {e['time']:.3f}s, "
                    f"installed: {sorted(keys)}"
                )
    note = "" if checked else "the gossip layer reports no accepted-packet keys: nothing to check"
    return _result("keyring_acceptance", checked, violations, note)


def check_all(
    events: Iterable[Any],
    operations: list[Any],
    *,
    final_local: dict[str, dict[str, Any]],
    applied_index: dict[str, int],
    views: dict[str, dict[str, str]],
    keyrings: dict[str, dict[str, Any]],
) -> list[InvariantResult]:
    evs = _events(events)
    return [
        election_safety(evs),
        state_machine_safety(evs),
        leader_completeness(evs),
        monotonic_indexes(evs),
        acknowledged_writes(evs, operations, final_local),
        replicas_converge(final_local, applied_index),
        gossip_convergence(views, keyrings),
        keyring_acceptance(evs),
    ]
