"""Consul's RPC argument and reply structs on the wire, and the server's own shapes.

The endpoints (``consim.server.endpoints``) take and return dicts with Consul's field names but
durations in seconds and a few conveniences (``KVS.Apply`` answers ``{Result, Index}``). This
module is the one place that converts between those and the structs a Go client encodes with
Consul's codec (``structs.DCSpecificRequest``, ``KeyRequest``, ``KeyListRequest``,
``KVSRequest``, ``RaftRemovePeerRequest``, ``KeyringRequest``; replies ``IndexedDirEntries``,
``IndexedKeyList``, ``RaftConfigurationResponse``, ``KeyringResponses``, ``RaftStats``...):
embedded structs flattened (``QueryOptions``, ``QueryMeta``, ``RaftIndex``), every
``time.Duration`` as int64 nanoseconds, nil for an empty slice, as go-msgpack writes them.

Pure functions, no I/O: ``decode_args(method, body)`` raises :class:`BadArgs` (Go's decoder would
fail to fill the struct), ``encode_reply(method, reply)`` shapes what the endpoint returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consim.golike import format_duration, parse_duration
from consim.net.msgpackrpc import ProtocolError, raw_bytes
from consim.server.endpoints import HANDLERS

NS_PER_SECOND = 1_000_000_000
MAX_INT64 = 2**63 - 1

# QueryOptions' time.Duration fields (nanoseconds on the wire, seconds for the endpoints).
DURATION_FIELDS = ("MaxQueryTime", "MaxStaleDuration", "MaxAge", "StaleIfError")

# Consul's registered RPC services: an unknown method of one of these is "can't find method",
# anything else "can't find service" (Go's net/rpc texts).
CONSUL_SERVICES = frozenset(
    {
        "ACL",
        "Catalog",
        "ConfigEntry",
        "ConnectCA",
        "Coordinate",
        "DiscoveryChain",
        "FederationState",
        "Health",
        "Intention",
        "Internal",
        "KVS",
        "Operator",
        "PreparedQuery",
        "Session",
        "Status",
        "Txn",
    }
)


class BadArgs(Exception):
    """The argument value does not fit the method's struct (Go's decode error)."""


def _check(cond: bool, field: str, want: str, value: Any) -> None:
    if not cond:
        raise BadArgs(
            f"msgpack decode error: cannot decode {type(value).__name__} into {want} ({field})"
        )


def _is_int(v: Any) -> bool:
    return type(v) is int


def _copy_present(
    body: dict[str, Any],
    out: dict[str, Any],
    names: tuple[str, ...],
    ok: Callable[[Any], bool],
    want: str,
) -> None:
    """Copy each of ``names`` that ``body`` carries into ``out``, checked to decode into Go's
    ``want`` (``ok``); an absent or nil field stays out (the endpoint's default)."""
    for name in names:
        value = body.get(name)
        if value is not None:
            _check(ok(value), name, want, value)
            out[name] = value


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _query_options(body: dict[str, Any]) -> dict[str, Any]:
    """The flattened QueryOptions/WriteRequest/DCSpecificRequest fields every request has."""
    out: dict[str, Any] = {}
    _copy_present(body, out, ("Datacenter", "Token", "Filter"), _is_str, "string")
    bools = ("AllowStale", "RequireConsistent", "UseCache", "MustRevalidate")
    _copy_present(body, out, bools, _is_bool, "bool")
    _copy_present(body, out, ("MinQueryIndex",), lambda v: _is_int(v) and v >= 0, "uint64")
    for name in DURATION_FIELDS:
        value = body.get(name)
        if value is not None:
            _check(_is_int(value) and abs(value) <= MAX_INT64, name, "time.Duration", value)
            out[name] = value / NS_PER_SECOND
    return out


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    _check(isinstance(value, str), name, "string", value)
    return value


def _map(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadArgs(f"msgpack decode error: cannot decode {type(body).__name__} into {what}")
    return body


# ---- arguments --------------------------------------------------------------------------------
def _args_empty(body: Any) -> dict[str, Any]:
    # struct{}: any map (or nil) decodes into it.
    _map(body, "struct {}")
    return {}


def _args_dc(body: Any) -> dict[str, Any]:
    return _query_options(_map(body, "structs.DCSpecificRequest"))


def _args_peers(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.DCSpecificRequest")
    # Consul lists every server; consim's own HTTP API asks for voters (AllServers false).
    every = b.get("AllServers")
    _check(every is None or isinstance(every, bool), "AllServers", "bool", every)
    return {**_query_options(b), "AllServers": True if every is None else every}


def _args_passthrough(body: Any) -> dict[str, Any]:
    """consim's own shape (methods no Go client is tested with): durations converted only."""
    b = _map(body, "struct")
    return {**b, **_query_options(b)}


def _args_key(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.KeyRequest")
    return {**_query_options(b), "Key": _string(b, "Key")}


def _args_key_list(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.KeyListRequest")
    # Consul's field really is spelled "Seperator".
    return {**_query_options(b), "Key": _string(b, "Prefix"), "Separator": _string(b, "Seperator")}


def _args_kvs_apply(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.KVSRequest")
    d = _map(b.get("DirEnt"), "structs.DirEntry")
    flags = d.get("Flags") or 0
    modify = d.get("ModifyIndex") or 0
    _check(_is_int(flags) and flags >= 0, "DirEnt.Flags", "uint64", flags)
    _check(_is_int(modify) and modify >= 0, "DirEnt.ModifyIndex", "uint64", modify)
    try:
        value = raw_bytes(d.get("Value"))
    except ProtocolError:
        raise BadArgs("msgpack decode error: cannot decode into []uint8 (DirEnt.Value)") from None
    return {
        **_query_options(b),
        "Op": _string(b, "Op"),
        "DirEnt": {
            "Key": _string(d, "Key"),
            "Value": value,
            "Flags": flags,
            "ModifyIndex": modify,
            "Session": _string(d, "Session"),
        },
    }


def _args_remove_peer(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.RaftRemovePeerRequest")
    return {**_query_options(b), "Address": _string(b, "Address"), "ID": _string(b, "ID")}


def _args_transfer_leader(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.TransferLeaderRequest")
    return {**_query_options(b), "ID": _string(b, "ID")}


def _args_keyring(body: Any) -> dict[str, Any]:
    b = _map(body, "structs.KeyringRequest")
    out = {**_query_options(b), "Op": _string(b, "Operation"), "Key": _string(b, "Key") or None}
    _copy_present(b, out, ("Forwarded", "LocalOnly"), _is_bool, "bool")
    _copy_present(b, out, ("RelayFactor",), lambda v: _is_int(v) and 0 <= v <= 255, "uint8")
    return out


# ---- replies ----------------------------------------------------------------------------------
def _ns(seconds: Any) -> int:
    """A duration in seconds as Go's time.Duration (int64 ns)."""
    value = float(seconds or 0.0)
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return max(-MAX_INT64, min(MAX_INT64, round(value * NS_PER_SECOND)))


def _query_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = {
        "Index": int(meta.get("Index") or 0),
        "LastContact": _ns(meta.get("LastContact")),
        "KnownLeader": bool(meta.get("KnownLeader")),
        "ConsistencyLevel": str(meta.get("ConsistencyLevel") or ""),
        "NotModified": False,
        "ResultsFilteredByACLs": bool(meta.get("ResultsFilteredByACLs")),
    }
    return out


def _dir_entry(entry: dict[str, Any]) -> dict[str, Any]:
    # structs.DirEntry with RaftIndex flattened (EnterpriseMeta is empty in OSS Consul).
    return {
        "LockIndex": int(entry.get("LockIndex") or 0),
        "Key": entry.get("Key", ""),
        "Flags": int(entry.get("Flags") or 0),
        "Value": entry.get("Value"),
        "Session": entry.get("Session") or "",
        "CreateIndex": int(entry.get("CreateIndex") or 0),
        "ModifyIndex": int(entry.get("ModifyIndex") or 0),
    }


def _reply_empty(reply: Any) -> dict[str, Any]:
    return {}


def _reply_same(reply: Any) -> Any:
    return reply


def _reply_peers(reply: Any) -> list[str] | None:
    return list(reply) or None


def _reply_raft_stats(reply: dict[str, Any]) -> dict[str, Any]:
    # hashicorp/raft's Stats()["last_contact"]: "never", "0" on the leader, else a Go duration.
    contact = float(reply.get("LastContact", -1.0))
    if contact < 0:
        text = "never"
    elif contact == 0:
        text = "0"
    else:
        text = format_duration(contact)
    return {
        "LastContact": text,
        "LastTerm": int(reply.get("LastTerm") or 0),
        "LastIndex": int(reply.get("LastIndex") or 0),
    }


def _reply_configuration(reply: dict[str, Any]) -> dict[str, Any]:
    servers = [
        {
            "ID": s["ID"],
            "Node": s["Node"],
            "Address": s["Address"],
            "Leader": bool(s["Leader"]),
            "ProtocolVersion": str(s["ProtocolVersion"]),
            "Voter": bool(s["Voter"]),
            "LastIndex": int(s.get("LastIndex") or 0),
        }
        for s in reply.get("Servers") or []
    ]
    return {"Servers": servers or None, "Index": int(reply.get("Index") or 0)}


def _reply_kvs_apply(reply: dict[str, Any]) -> bool:
    # KVS.Apply's reply is a bare *bool.
    return bool(reply.get("Result"))


def _reply_entries(reply: dict[str, Any]) -> dict[str, Any]:
    entries = [_dir_entry(e) for e in reply.get("Entries") or []]
    return {"Entries": entries or None, **_query_meta(reply.get("QueryMeta") or {})}


def _reply_keys(reply: dict[str, Any]) -> dict[str, Any]:
    keys = list(reply.get("Keys") or [])
    return {"Keys": keys or None, **_query_meta(reply.get("QueryMeta") or {})}


def _reply_keyring(reply: list[dict[str, Any]]) -> dict[str, Any]:
    responses = [
        {
            "WAN": bool(r.get("WAN")),
            "Datacenter": r.get("Datacenter", ""),
            "Segment": r.get("Segment", ""),
            "Messages": r.get("Messages") or None,
            "Keys": r.get("Keys") or None,
            "PrimaryKeys": r.get("PrimaryKeys") or None,
            "NumNodes": int(r.get("NumNodes") or 0),
            "Error": r.get("Error") or "",
        }
        for r in reply or []
    ]
    return {"Responses": responses or None}


# ---- replies back into the endpoints' shapes (consim calling consim) -------------------------
def _seconds(ns: Any) -> float:
    return int(ns or 0) / NS_PER_SECOND


def _meta_back(reply: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "Index": int(reply.get("Index") or 0),
        "LastContact": _seconds(reply.get("LastContact")),
        "KnownLeader": bool(reply.get("KnownLeader")),
        "ConsistencyLevel": str(reply.get("ConsistencyLevel") or ""),
    }
    if reply.get("ResultsFilteredByACLs"):
        meta["ResultsFilteredByACLs"] = True
    return meta


def _back_ping(reply: Any) -> bool:
    return True


def _back_peers(reply: Any) -> list[str]:
    return list(reply or [])


def _back_raft_stats(reply: dict[str, Any]) -> dict[str, Any]:
    text = str(reply.get("LastContact") or "never")
    contact = -1.0 if text == "never" else 0.0 if text == "0" else parse_duration(text)
    return {
        "LastTerm": int(reply.get("LastTerm") or 0),
        "LastIndex": int(reply.get("LastIndex") or 0),
        "LastContact": contact,
    }


def _back_configuration(reply: dict[str, Any]) -> dict[str, Any]:
    keys = ("ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter", "LastIndex")
    servers = [{k: s.get(k) for k in keys} for s in reply.get("Servers") or []]
    return {"Servers": servers, "Index": int(reply.get("Index") or 0)}


def _back_kvs_apply(reply: Any) -> dict[str, Any]:
    return {"Result": bool(reply), "Index": 0}


def _back_entry(e: dict[str, Any]) -> dict[str, Any]:
    out = {
        "LockIndex": int(e.get("LockIndex") or 0),
        "Key": e.get("Key", ""),
        "Flags": int(e.get("Flags") or 0),
        "Value": raw_bytes(e.get("Value")),
        "CreateIndex": int(e.get("CreateIndex") or 0),
        "ModifyIndex": int(e.get("ModifyIndex") or 0),
    }
    if e.get("Session"):
        out["Session"] = e["Session"]
    return out


def _back_entries(reply: dict[str, Any]) -> dict[str, Any]:
    entries = [_back_entry(e) for e in reply.get("Entries") or []]
    return {
        "Entries": entries,
        "Index": int(reply.get("Index") or 0),
        "QueryMeta": _meta_back(reply),
    }


def _back_keys(reply: dict[str, Any]) -> dict[str, Any]:
    keys = list(reply.get("Keys") or [])
    return {"Keys": keys, "Index": int(reply.get("Index") or 0), "QueryMeta": _meta_back(reply)}


def _back_keyring(reply: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in reply.get("Responses") or []:
        entry = {
            "WAN": bool(r.get("WAN")),
            "Datacenter": r.get("Datacenter", ""),
            "Segment": r.get("Segment", ""),
            "Keys": dict(r.get("Keys") or {}),
            "PrimaryKeys": dict(r.get("PrimaryKeys") or {}),
            "NumNodes": int(r.get("NumNodes") or 0),
            "Error": r.get("Error") or "",
        }
        if r.get("Messages"):
            entry["Messages"] = dict(sorted(r["Messages"].items()))
        out.append(entry)
    return out


@dataclass(frozen=True)
class Method:
    """One RPC method as Consul serves it: its wire struct in, the reply struct out, and the
    way back into the endpoint's reply (for consim's own calls)."""

    args: Callable[[Any], dict[str, Any]]
    reply: Callable[[Any], Any]
    back: Callable[[Any], Any] = _reply_same
    # consim's own shape on the wire, in the endpoint's order (not Consul's sorted structs)
    passthrough: bool = False


_META_KEYS = ("Index", "LastContact", "KnownLeader", "ConsistencyLevel", "NotModified")


def _reply_generic(reply: Any) -> Any:
    """A query reply in consim's shape with Consul's QueryMeta flattened into it (ns)."""
    if isinstance(reply, dict) and isinstance(reply.get("QueryMeta"), dict):
        rest = {k: v for k, v in reply.items() if k not in ("QueryMeta", "Index")}
        return {**rest, **_query_meta(reply["QueryMeta"])}
    return reply


def _back_generic(reply: Any) -> Any:
    if isinstance(reply, dict) and "KnownLeader" in reply and "ConsistencyLevel" in reply:
        rest = {
            k: v for k, v in reply.items() if k not in _META_KEYS and k != "ResultsFilteredByACLs"
        }
        return {**rest, "Index": int(reply.get("Index") or 0), "QueryMeta": _meta_back(reply)}
    return reply


_PASS = Method(_args_passthrough, _reply_generic, _back_generic, passthrough=True)

METHODS: dict[str, Method] = {
    "Status.Ping": Method(_args_empty, _reply_empty, _back_ping),
    "Status.Leader": Method(_args_dc, _reply_same),
    # Consul's Status.Peers lists every server of the Raft configuration, non-voters too.
    "Status.Peers": Method(_args_peers, _reply_peers, _back_peers),
    "Status.RaftStats": Method(_args_empty, _reply_raft_stats, _back_raft_stats),
    "Operator.RaftGetConfiguration": Method(_args_dc, _reply_configuration, _back_configuration),
    "Operator.RaftRemovePeerByAddress": Method(_args_remove_peer, _reply_empty),
    "Operator.RaftRemovePeerByID": Method(_args_remove_peer, _reply_empty),
    "Operator.RaftTransferLeader": Method(_args_transfer_leader, _reply_same),
    "KVS.Apply": Method(_args_kvs_apply, _reply_kvs_apply, _back_kvs_apply),
    "KVS.Get": Method(_args_key, _reply_entries, _back_entries),
    "KVS.List": Method(_args_key, _reply_entries, _back_entries),
    "KVS.ListKeys": Method(_args_key_list, _reply_keys, _back_keys),
    "Internal.KeyringOperation": Method(_args_keyring, _reply_keyring, _back_keyring),
    "Operator.AutopilotGetConfiguration": _PASS,
    "Operator.AutopilotSetConfiguration": _PASS,
    "Operator.ServerHealth": _PASS,
    "Operator.AutopilotState": _PASS,
}


class UnknownMethod(Exception):
    """Go's net/rpc texts for a method nobody serves (the server then closes the connection)."""


def lookup(method: str) -> Method:
    """The method's wire shapes; raises UnknownMethod with Go's net/rpc text."""
    dot = method.rfind(".")
    if dot < 0:
        raise UnknownMethod(f"rpc: service/method request ill-formed: {method}")
    found = METHODS.get(method)
    if found is not None:
        return found
    if method in HANDLERS:
        return _PASS  # an endpoint with no Consul struct mapping yet: consim's own shapes
    if method[:dot] in CONSUL_SERVICES:
        raise UnknownMethod(f"rpc: can't find method {method}")
    raise UnknownMethod(f"rpc: can't find service {method}")


def decode_args(method: str, body: Any) -> dict[str, Any]:
    """The endpoint's arguments for a request body; raises BadArgs/UnknownMethod."""
    return lookup(method).args(body)


def encode_reply(method: str, reply: Any) -> Any:
    """The reply struct for what the endpoint returned."""
    return lookup(method).reply(reply)


def decode_reply(method: str, reply: Any) -> Any:
    """A reply struct from another server, back in the endpoint's shape."""
    return lookup(method).back(reply)


def sorted_on_wire(method: str) -> bool:
    """False for the methods that carry consim's own shapes (kept in the endpoint's order)."""
    found = METHODS.get(method)
    if found is None:
        return method not in HANDLERS
    return not found.passthrough


# ---- the client side: consim's own calls to other servers (forwarding) ------------------------
def encode_args(method: str, args: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's arguments as the wire struct a Go client would send (durations in ns)."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        if name in DURATION_FIELDS:
            out[name] = _ns(value)
        else:
            out[name] = value
    if method == "Status.Peers":
        out["AllServers"] = bool(args.get("AllServers"))
    if method == "KVS.ListKeys":
        out["Prefix"] = out.pop("Key", "")
        out["Seperator"] = out.pop("Separator", "")
    elif method == "Internal.KeyringOperation":
        out["Operation"] = out.pop("Op", "")
        if out.get("Key") is None:
            out["Key"] = ""
    return out
