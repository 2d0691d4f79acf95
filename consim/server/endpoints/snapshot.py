"""Consul's snapshot endpoint (``snapshot_endpoint.go``, ``snapshot/archive.go``): save the
state machine as an archive, restore one through Raft.

The archive is Consul's shape: a gzip'd tar of ``meta.json`` (the Raft index, term and
configuration of the snapshot), ``state.bin`` (consim's state machine snapshot, not Consul's
binary format) and ``SHA256SUMS``; a restore checks the sums and the archive's shape first.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

from consim.net.network import RpcError
from consim.server.endpoints.kvs import consistent_read, query_meta
from consim.server.endpoints.registry import endpoint, require
from consim.server.interface import Server
from consim.server.state.base import encode_command

MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def archive(node: Server) -> tuple[int, bytes]:
    """The archive of this server's state machine; (its index, the gzip'd tar)."""
    core = node.raft()
    state = node.fsm.snapshot()
    index = node.fsm.last_applied
    meta = json.dumps(
        {
            "Version": 1,
            "ID": f"{core.term}-{index}",
            "Index": index,
            "Term": core.term,
            "Configuration": {
                "Servers": [
                    {
                        "Suffrage": "Voter" if s.is_voter else "Nonvoter",
                        "ID": s.id,
                        "Address": s.address,
                    }
                    for s in core.latest_configuration.servers
                ]
            },
            "ConfigurationIndex": core.latest_configuration_index,
            "Size": len(state),
        }
    ).encode()
    sums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in (("meta.json", meta), ("state.bin", state))
    ).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _member(tar, "meta.json", meta)
        _member(tar, "state.bin", state)
        _member(tar, "SHA256SUMS", sums)
    return index, gzip.compress(raw.getvalue(), mtime=0)


def read_archive(data: bytes) -> bytes:
    """The state machine bytes of an archive; RpcError with the reason it cannot be read."""
    try:
        raw = gzip.decompress(data)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for info in tar:
                f = tar.extractfile(info)
                if f is not None:
                    files[info.name] = f.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise RpcError(f"failed to read snapshot file: {exc}") from None
    for name in ("meta.json", "state.bin", "SHA256SUMS"):
        if name not in files:
            raise RpcError(f"failed to read snapshot file: archive is missing {name}")
    want = {}
    for line in files["SHA256SUMS"].decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        want[name] = digest
    for name in ("meta.json", "state.bin"):
        if hashlib.sha256(files[name]).hexdigest() != want.get(name):
            raise RpcError(f"failed to read snapshot file: checksum mismatch for {name}")
    return files["state.bin"]


@endpoint("Snapshot.Save", read=True)
async def snapshot_save(node: Server, args: dict[str, Any]) -> dict[str, Any]:
    # "There's only a single ACL sense here": reading a snapshot gives every token.
    require(node, args, "acl", "write")
    if not args.get("AllowStale"):
        await consistent_read(node)
    index, data = archive(node)
    return {"Data": data, "Index": index, "QueryMeta": query_meta(node, args, index)}


@endpoint("Snapshot.Restore")
async def snapshot_restore(node: Server, args: dict[str, Any]) -> bool:
    require(node, args, "acl", "write")
    data = args.get("Data") or b""
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise RpcError("snapshot too large")
    state = read_archive(bytes(data))
    result = await node.apply_command(encode_command("Restore", {"State": state}))
    if isinstance(result, dict) and "Error" in result:
        raise RpcError(str(result["Error"]))
    return True
