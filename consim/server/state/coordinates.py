"""The coordinates table: network coordinates per node, as Consul's state store keeps them
(``coordinates``: node + segment -> Vivaldi coordinate), written by ``Coordinate.Update``
batches and read by ``/v1/coordinate/nodes`` and ``/v1/coordinate/node/<node>``.

consim's serf measures no round trips (no Vivaldi), so nothing here moves on its own: a
node's coordinate is what a client wrote, and every agent's own coordinate is serf's initial
one (:func:`initial_coordinate`, the origin with the largest error).
"""

from __future__ import annotations

from typing import Any

from consim.server.state.base import Table
from consim.server.state.catalog import CatalogTable

# serf/coordinate's DefaultConfig: 8 dimensions, VivaldiErrorMax 1.5, HeightMin 10e-6.
DIMENSIONALITY = 8
ERROR_MAX = 1.5
HEIGHT_MIN = 10.0e-6


def initial_coordinate() -> dict[str, Any]:
    """coordinate.NewCoordinate(DefaultConfig()), in the Go struct's field order."""
    return {
        "Vec": [0.0] * DIMENSIONALITY,
        "Error": ERROR_MAX,
        "Adjustment": 0.0,
        "Height": HEIGHT_MIN,
    }


class CoordinateTable(Table):
    name = "coordinates"
    commands = {"CoordinateBatchUpdate": "batch_update"}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        # (node, segment) -> {"Coord": the coordinate, "Node": the node's CreateIndex then}
        self.coordinates: dict[tuple[str, str], dict[str, Any]] = {}

    def batch_update(self, index: int, command: dict[str, Any]) -> Any:
        # Consul's CoordinateBatchUpdate drops updates for nodes the catalog does not know
        # (coordinates are deleted with their node).
        catalog = self.store.table(CatalogTable)
        changed = False
        for update in command.get("Updates") or []:
            node = str(update.get("Node", ""))
            if node not in catalog.nodes:
                continue
            key = (node, str(update.get("Segment", "")))
            # kept with the node's CreateIndex: a node deregistered and registered again is a
            # new node, and its old coordinate is gone (Consul deletes it with the node)
            born = int(catalog.nodes[node].get("CreateIndex") or 0)
            self.coordinates[key] = {"Coord": dict(update.get("Coord") or {}), "Node": born}
            changed = True
        if changed:
            self.store.bump(index, self.name)
        return None

    def list(self) -> list[dict[str, Any]]:
        """Every coordinate whose node is still in the catalog, sorted by node then segment."""
        nodes = self.store.table(CatalogTable).nodes
        return [
            {"Node": node, "Segment": segment, "Coord": entry["Coord"]}
            for (node, segment), entry in sorted(self.coordinates.items())
            if node in nodes and int(nodes[node].get("CreateIndex") or 0) == entry["Node"]
        ]

    def index(self) -> int:
        # with "nodes": a deregistered node takes its coordinates with it, which wakes readers
        return self.store.max_index(self.name, "nodes")

    def node(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.list() if c["Node"] == name]

    def snapshot(self) -> Any:
        return [[n, s, e["Node"], e["Coord"]] for (n, s), e in sorted(self.coordinates.items())]

    def restore(self, obj: Any) -> None:
        self.coordinates = {(n, s): {"Node": born, "Coord": dict(c)} for n, s, born, c in obj or []}
