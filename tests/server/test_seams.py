"""The server's parts reach each other through public names only: no endpoint module (nor the
forwarding, leader, autopilot, membership, agent or gossip code) touches a ``_private`` attribute
of another object, and there is one endpoint registry that every RPC method is found in."""

from __future__ import annotations

import ast
from pathlib import Path

from consim.server import endpoints, forwarding

SERVER = Path(__file__).resolve().parents[2] / "consim" / "server"
# node.py wires the parts: it is the one module allowed to hold their insides.
PARTS = sorted(p for p in SERVER.rglob("*.py") if p.name != "node.py")


def private_reaches(source: str, filename: str = "<source>") -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls``: a reach into another object's privates."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
            continue
        out.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_the_check_sees_a_reach_into_a_private() -> None:
    source = "async def f(node):\n    await node._wait_for_index(1)\n    return self._ok\n"
    assert private_reaches(source) == ["<source>:2: node._wait_for_index"]


def test_no_part_of_the_server_reaches_a_private_of_another_object() -> None:
    assert len(PARTS) >= 10  # endpoints/ and the parts beside node.py were read
    found = [r for p in PARTS for r in private_reaches(p.read_text(), str(p.relative_to(SERVER)))]
    assert not found, "\n".join(found)


def test_one_registry_serves_every_method_forwarding_knows() -> None:
    methods = set(endpoints.HANDLERS)
    assert methods >= forwarding.READ_METHODS
    assert methods >= forwarding.LOCAL_METHODS
    for family in ("Status", "Operator", "KVS", "Internal"):
        assert any(m.startswith(f"{family}.") for m in methods), family
    # Each handler lives in the module named after its family.
    for method, handler in endpoints.HANDLERS.items():
        family = method.split(".")[0].lower()
        assert handler.__module__ == f"consim.server.endpoints.{family}", method
