"""Who the other servers are (Consul's router and serf views): this server's LAN and WAN gossip
pools, and the static directory of the cluster's servers that stands in for them when gossip is
off (and seeds the first join and the bootstrap configuration).
"""

from __future__ import annotations

from collections.abc import Callable

from consim.gossip.types import STATUS_ALIVE
from consim.server.gossip_driver import GossipPool
from consim.spec import ServerSpec


class Membership:
    def __init__(
        self,
        datacenter: str,
        directory: Callable[[], list[ServerSpec]],
        lan_pool: GossipPool | None,
        wan_pool: GossipPool | None,
    ) -> None:
        self.datacenter = datacenter
        self.directory = directory  # every server the cluster knows
        self.lan_pool = lan_pool
        self.wan_pool = wan_pool

    def local_servers(self) -> list[ServerSpec]:
        """This datacenter's servers in the directory (the bootstrap configuration)."""
        return [s for s in self.directory() if s.datacenter == self.datacenter]

    def join_addresses(self) -> tuple[list[str], list[str]]:
        """The serf addresses a starting server joins: (LAN, WAN)."""
        directory = self.directory()
        lan = [s.serf_lan_address for s in directory if s.datacenter == self.datacenter]
        wan = [s.serf_wan_address for s in directory]
        return lan, wan

    def datacenter_routes(self, datacenter: str) -> tuple[bool, list[str]]:
        """(is the datacenter known, RPC addresses of its servers believed alive), from the WAN pool
        as Consul's router does; from the static directory when gossip is off."""
        if self.wan_pool is not None:
            members = [m for m in self.wan_pool.members() if m.tags.get("dc") == datacenter]
            alive = [
                f"{m.addr}:{m.tags.get('port', '8300')}"
                for m in members
                if m.status == STATUS_ALIVE
            ]
            return bool(members), alive
        specs = [s.rpc_address for s in self.directory() if s.datacenter == datacenter]
        return bool(specs), specs

    def known_datacenters(self) -> list[str]:
        if self.wan_pool is not None:
            names = {m.tags.get("dc", "") for m in self.wan_pool.members()}
            names.add(self.datacenter)
            return sorted(n for n in names if n)
        return sorted({s.datacenter for s in self.directory()})

    def member_names(self) -> dict[str, str]:
        """RPC address -> node name for every server at once, as Consul looks the Node name up in
        the LAN pool (first match wins; an address missing from the map is ``(unknown)``): one
        pass over the LAN pool per request instead of one per server."""
        names: dict[str, str] = {}
        if self.lan_pool is not None:
            for member in self.lan_pool.members():
                names.setdefault(f"{member.addr}:{member.tags.get('port', '8300')}", member.name)
            return names
        for spec in self.directory():
            if spec.datacenter == self.datacenter:
                names.setdefault(spec.rpc_address, spec.name)
        return names
