"""``/v1/txn`` (Consul's ``agent/txn_endpoint.go``): KV operations in one transaction.

Values travel base64 in and out; a transaction that only reads is answered without Raft
(``Txn.Read``, honouring ``?stale``/``?consistent``); a failed one is ``409`` with its errors.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from consim.golike import GoError, decode_json_value, go_json_kind, marshal_json
from consim.http.context import Ctx, HTTPError, Reply, Route

MAX_TXN_OPS = 128
_KV_FIELDS = ("Verb", "Key", "Value", "Flags", "Index", "Session", "Namespace", "Partition")
_DIRENT_FIELDS = ("LockIndex", "Key", "Flags", "Value", "Session", "CreateIndex", "ModifyIndex")
_READ_VERBS = {"get", "get-tree", "check-index", "check-session", "check-not-exists"}


def _decode_ops(raw: bytes) -> list[dict[str, Any]]:
    try:
        obj = decode_json_value(raw)
    except GoError as exc:
        raise HTTPError(400, f"Failed to parse body: {exc}") from None
    if obj is None:
        obj = []
    if not isinstance(obj, list):
        raise HTTPError(
            400,
            f"Failed to parse body: json: cannot unmarshal {go_json_kind(obj)} into Go value of type api.TxnOps",
        )
    if len(obj) > MAX_TXN_OPS:
        raise HTTPError(
            413, f"Transaction contains too many operations ({len(obj)} > {MAX_TXN_OPS})"
        )
    ops = []
    for i, op in enumerate(obj):
        kv = None
        if isinstance(op, dict):
            for name, value in op.items():
                if name.lower() == "kv":
                    kv = value
                elif name.lower() in ("node", "service", "check", "session"):
                    raise HTTPError(
                        400, f"Failed to parse body: {name} operations are not served by consim"
                    )
        if not isinstance(kv, dict):
            raise HTTPError(400, f"Failed to parse body: operation {i} has no KV")
        by_lower = {f.lower(): f for f in _KV_FIELDS}
        out = {by_lower[k.lower()]: v for k, v in kv.items() if k.lower() in by_lower}
        value = out.get("Value")
        if isinstance(value, str):
            try:
                out["Value"] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPError(
                    400, "Failed to parse body: illegal base64 data at input byte 0"
                ) from None
        ops.append({"KV": out})
    return ops


def _dirent(e: dict[str, Any]) -> dict[str, Any]:
    out = {k: e.get(k) for k in _DIRENT_FIELDS if k in e or k != "Session"}
    value = out.get("Value")
    out["Value"] = base64.b64encode(value).decode() if value else None
    if not out.get("Session"):
        out.pop("Session", None)
    return out


async def txn(c: Ctx) -> Any:
    ops = _decode_ops(await c.body())
    read_only = all(op["KV"].get("Verb") in _READ_VERBS for op in ops)
    if read_only:
        args = c.query_args()
        args["Ops"] = ops
        reply = await c.rpc("Txn.Read", args)
        c.set_meta(reply)
    else:
        args = c.write_args()
        args["Ops"] = ops
        reply = await c.rpc("Txn.Apply", args)
        c.meta_headers["X-Consul-Index"] = str(int(reply.get("Index") or 0))
    results = reply.get("Results")
    body = {
        "Results": None if results is None else [{"KV": _dirent(r["KV"])} for r in results],
        "Errors": reply.get("Errors") or None,
    }
    if body["Errors"]:
        return Reply(409, marshal_json(body, c.has("pretty")), content_type="application/json")
    return body


ROUTES: tuple[Route, ...] = (Route("/v1/txn", False, ("PUT",), txn),)
