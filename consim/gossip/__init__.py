"""Sans-IO gossip: SWIM membership (memberlist), serf statuses/events/queries, the AES-GCM keyring.

One :class:`GossipCore` is one member of one pool. A Consul server has two: LAN (the servers of its
datacenter, member name = node name, ``dc1-s1``) and WAN (all servers, member name ``node.dc``,
``dc1-s1.dc1``). Nothing here imports trio, sockets or clocks; time is always the ``now`` argument
(seconds) and randomness comes only from the ``random.Random`` handed in, so a virtual-time run is
reproducible byte for byte.

Driver contract (the h11 / etcd-raft "Ready" style)::

    from consim.gossip import GossipCore, GossipConfig, Keyring, consul_server_tags

    core = GossipCore(name, "127.0.0.1:8301", tags=consul_server_tags(dc="dc1", node_id=...),
                      config=GossipConfig.lan(scale=1.0), rng=random.Random(seed), now=t,
                      keyring=Keyring.from_json(text) | Keyring([key]) | None)   # None = no encryption
    core.join("127.0.0.2:8301", now)             # push-pull with a known member (retried)
    core.leave(now)                              # graceful: status leaving (2) then left (3)
    core.force_leave(name, prune, now)           # failed -> left; prune forgets; GossipError if unknown
    core.set_tags(tags, now)
    qid = core.start_keyring_query(op, key_b64 | None, now)   # op: install|use|remove|list
    qid = core.start_query("_serf_ping", None, now)           # generic -> QueryResponse (acks)
    core.user_event("consul:event:x", b"payload", now)       # serf UserEvent
    core.tick(now)                               # call at (or after) core.next_deadline()
    core.receive(src_address, payload, now)      # one datagram from the network
    reply = core.receive_stream(src, data, now)  # one incoming TCP exchange -> bytes to write back
    core.receive_stream_reply(dst, data, now)    # the answer to an exchange from ready().streams
    ready = core.ready()                         # drain after every call above
    ready.datagrams      # list[(dst_address, bytes)]: send each, best effort (UDP-like)
    ready.streams        # list[(dst_address, bytes)]: open a stream, write, read one message back
    ready.events         # list[GossipEvent(kind, fields, level, message)]
    ready.query_results  # list[(qid, KeyringResponse | QueryResponse)], once per query
    core.next_deadline() # float seconds (math.inf once the member has left)
    core.members() -> list[Member]   # sorted by name; Member(name, addr, port, tags, status, incarnation)
    core.local_member, core.keyring (None or Keyring), core.counters (dict[str, int]), core.num_alive()

Member statuses are Consul's numbers (``consim.gossip.types``): 0 none, 1 alive (memberlist's
suspect still reports alive, as serf does), 2 leaving, 3 left, 4 failed. ``Member.to_api()`` gives
the ``/v1/agent/members`` shape.

Events (``GossipEvent.kind`` -> message; the driver adds time, node and subsystem):

- ``member_join``      ``EventMemberJoin: dc1-s2 127.0.0.2`` (also for ourselves at start, and a
                       failed/left member coming back)
- ``member_failed``    ``EventMemberFailed: dc1-s2 127.0.0.2``
- ``member_left``      ``EventMemberLeave: dc1-s2 127.0.0.2`` / ``EventMemberLeave (forced): ...``
- ``member_reap``      ``EventMemberReap (forced): ...`` (force-leave with prune)
- ``member_update``    ``EventMemberUpdate: dc1-s2`` (tags changed)
- ``member_suspect``   ``Suspect dc1-s2 has failed, no acks received`` / ``Suspect dc1-s2 (from: x)``
- ``suspect_timeout``  ``Marking dc1-s2 as failed, suspect timeout reached (0 peer confirmations)``
- ``member_alive``     (DEBUG) a suspect refuted; ``refute`` (WARN) we refuted a suspect/dead claim
- ``member_leaving``   (DEBUG) our own leave started; ``member_conflict`` (ERROR) address clash
- ``join_failed``      (WARN) ``Failed to join 10.0.0.9:8301: no response`` after the join's
                       push-pull went unanswered (retried every ProbeInterval, 5 times; memberlist
                       joins over TCP, our push-pull is a datagram, so retries stand in for TCP)
- ``key_installed`` / ``key_used`` / ``key_removed`` / ``key_listed``: ``Received install-key query``
  (fields: op, ok, key_id = sha256 prefix, never the key) or, at ERROR,
  ``Failed to install key: <reason>``. After these the driver persists ``core.keyring.to_json()``.
- ``user_event``       a serf user event, logged as a Consul server does (``new event: x`` for
                       ``consul:event:x``, ``Unhandled local event: name`` otherwise)
- ``packet_dropped``   (ERROR) ``Decrypt packet failed: no installed keys could decrypt the message
  from=<addr>``; logged at most once per probe interval per (reason, source), always counted.

Counters: ``packets_in``, ``packets_out``, ``streams_in``, ``streams_out``, ``user_events``,
``dropped_decrypt`` (no installed key opens it), ``dropped_plaintext`` (plaintext while encryption
is on), ``dropped_encrypted`` (sealed while encryption is off), ``dropped_malformed`` (anything
memberlist or serf would fail to decode, or a bad address).

Wire: memberlist 0.2.2 and serf 0.9.4 exactly (``wire.py``; ``docs/gossip-wire.md``): typed UDP
messages with go-msgpack bodies, compound packets, CRC, LZW decoding, serf user messages, and
push-pull as a TCP stream exchange sealed with its header as additional data. A Debian ``serf``
agent joins a consim pool (``tests/conformance/serf``).

Keyring queries (serf ``_serf_install-key`` / ``_serf_use-key`` / ``_serf_remove-key`` /
``_serf_list-keys``): the query spreads by gossip; every member applies it to its own keyring and
answers the originator directly; the originator aggregates into :class:`KeyringResponse`
(``messages``, ``num_nodes`` = alive members, ``num_resp``, ``num_err``, ``keys``,
``primary_keys``, ``error``) until all alive members answered or the serf query timeout
``GossipInterval * 16 * ceil(log10(N+1))`` passes. ``error`` is serf keymanager's
``"%d/%d nodes reported failure"`` or ``"%d/%d nodes reported success"`` (a member down during the
query is counted in N and never answers). Bad base64 raises ``KeyringError`` with Go's text
(``illegal base64 data at input byte 4``) before anything is sent.

A failed probe also sends memberlist's TCP fallback ping to a member speaking protocol >= 3: if
it answers, that member is not suspected and the prober warns ``Was able to connect to <name> but
other probes failed, network may be misconfigured`` (``GossipConfig.tcp_pings``, on as in memberlist).

Simplifications, on purpose: nothing is sent compressed unless ``GossipConfig.compression``, no Vivaldi coordinates (acks carry
serf's initial one), serf's event buffer
is not carried in push-pull, failed/left members are never reaped except by force-leave prune.
``consim/gossip/harness.py`` is an in-memory discrete-event world for tests and benchmarks.
"""

from consim.gossip import types
from consim.gossip.config import GossipConfig
from consim.gossip.core import KEYRING_QUERIES, GossipCore
from consim.gossip.keyring import Keyring, KeyringError, decode_key, go_base64_decode

# The plain data types and status numbers, named once: by types.__all__.
from consim.gossip.types import *  # noqa: F403

__all__ = [
    "KEYRING_QUERIES",
    "GossipConfig",
    "GossipCore",
    "Keyring",
    "KeyringError",
    "decode_key",
    "go_base64_decode",
]
__all__ += types.__all__
