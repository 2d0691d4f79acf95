"""/v1/operator/keyring on a real cluster in virtual time (reference §3 keyring rules)."""

from __future__ import annotations

import json

import trio

from .helpers import (
    K1,
    K2,
    K3,
    call,
    eventually,
    get_json,
    key_body,
    run,
    settled,
)

KEYRING = "/v1/operator/keyring"
THREE_DCS = (("dc1", 3), ("dc2", 2), ("dc3", 2))


def _entries(listing):
    return [(e["WAN"], e["Datacenter"]) for e in listing]


def test_three_datacenter_rotation_default_gossip_timing():
    """install, use, remove across WAN + three LAN pools, with memberlist's default intervals."""

    async def body(c):
        await settled(c)
        listing = await get_json(c, "dc2-s1", KEYRING)
        # WAN first (the answering server's datacenter), then each datacenter's LAN entry.
        assert _entries(listing) == [(True, "dc2"), (False, "dc1"), (False, "dc2"), (False, "dc3")]
        for e in listing:
            assert list(e) == ["WAN", "Datacenter", "Segment", "Keys", "PrimaryKeys", "NumNodes"]
            n = 7 if e["WAN"] else {"dc1": 3, "dc2": 2, "dc3": 2}[e["Datacenter"]]
            assert e == {
                "WAN": e["WAN"],
                "Datacenter": e["Datacenter"],
                "Segment": "",
                "Keys": {K1: n},
                "PrimaryKeys": {K1: n},
                "NumNodes": n,
            }

        assert await call(c, "dc1-s1", "POST", KEYRING, key_body(K2)) == (200, "")
        listing = await get_json(c, "dc1-s2", KEYRING)
        assert _entries(listing) == [(True, "dc1"), (False, "dc1"), (False, "dc2"), (False, "dc3")]
        for e in listing:
            n = e["NumNodes"]
            assert e["Keys"] == {K1: n, K2: n}
            assert e["PrimaryKeys"] == {K1: n}
        # Installing an installed key is a no-op success.
        assert await call(c, "dc3-s1", "POST", KEYRING, key_body(K2)) == (200, "")

        assert await call(c, "dc3-s2", "PUT", KEYRING, key_body(K2)) == (200, "")
        for e in await get_json(c, "dc1-s3", KEYRING):
            n = e["NumNodes"]
            assert e["Keys"] == {K1: n, K2: n} and e["PrimaryKeys"] == {K2: n}

        assert await call(c, "dc2-s2", "DELETE", KEYRING, key_body(K1)) == (200, "")
        listing = await get_json(c, "dc1-s1", KEYRING)
        assert [e["NumNodes"] for e in listing] == [7, 3, 2, 2]
        for e in listing:
            n = e["NumNodes"]
            assert e["Keys"] == {K2: n} and e["PrimaryKeys"] == {K2: n}
        # Every server's own keyring agrees, in both pools.
        for node in c.servers.values():
            for pool in (node.lan_pool, node.wan_pool):
                assert json.loads(pool.core.keyring.to_json()) == [K2]
        # Removing a key that is not installed is a success.
        assert await call(c, "dc1-s1", "DELETE", KEYRING, key_body(K3)) == (200, "")
        # Gossip still works under the new key: membership stays whole.
        await trio.sleep(10)
        for e in await get_json(c, "dc1-s1", KEYRING):
            assert e["NumNodes"] == (
                7 if e["WAN"] else {"dc1": 3, "dc2": 2, "dc3": 2}[e["Datacenter"]]
            )

    run(body, datacenters=THREE_DCS, gossip_scale=1.0)


def test_local_only_lists_only_the_local_lan_pool():
    async def body(c):
        await settled(c)
        listing = await get_json(c, "dc2-s1", KEYRING + "?local-only=true")
        assert listing == [
            {
                "WAN": False,
                "Datacenter": "dc2",
                "Segment": "",
                "Keys": {K1: 2},
                "PrimaryKeys": {K1: 2},
                "NumNodes": 2,
            }
        ]
        # local-only=false is the full listing
        assert len(await get_json(c, "dc2-s1", KEYRING + "?local-only=false")) == 3

    run(body, datacenters=(("dc1", 3), ("dc2", 2)))


def test_server_down_during_install_is_counted():
    """A server that never answers is counted in N: serf's `%d/%d nodes reported success`."""

    async def body(c):
        await settled(c)
        c.kill("dc1-s3")
        # The LAN query times out (GossipInterval*16*ceil(log10(4)) = 1.6s at scale 0.5) before
        # the LAN pool has marked dc1-s3 failed, so it is still counted in NumNodes.
        status, text = await call(c, "dc1-s1", "GET", KEYRING + "?local-only=true")
        assert (status, text) == (
            500,
            "1 error occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported success\n\n",
        )
        # A full install right after the kill: the WAN pool (queried first) still counts dc1-s3.
        status, text = await call(c, "dc1-s1", "POST", KEYRING, key_body(K2))
        assert status == 500
        assert text.startswith("1 error occurred:\n\t* WAN error: 4/5 nodes reported success\n")
        assert text.endswith("\n\n")
        # The others did install it.
        for name in ("dc1-s1", "dc1-s2", "dc2-s1", "dc2-s2"):
            node = c.node(name)
            assert K2 in json.loads(node.wan_pool.core.keyring.to_json())
            assert K2 in json.loads(node.lan_pool.core.keyring.to_json())
        # Once dc1-s3 is marked failed it drops out of NumNodes and the call succeeds.
        await eventually(
            lambda: (
                all(
                    m.status == 4
                    for m in c.node("dc1-s1").lan_pool.members()
                    + c.node("dc1-s1").wan_pool.members()
                    if m.name.startswith("dc1-s3")
                )
                and all(
                    m.status == 4
                    for m in c.node("dc2-s1").wan_pool.members()
                    if m.name.startswith("dc1-s3")
                )
            )
        )
        listing = await get_json(c, "dc1-s1", KEYRING)
        assert [e["NumNodes"] for e in listing] == [4, 2, 2]
        for e in listing:
            n = e["NumNodes"]
            assert e["Keys"] == {K1: n, K2: n}

    run(body, datacenters=(("dc1", 3), ("dc2", 2)))


def test_keyring_rule_texts():
    async def body(c):
        await settled(c)

        async def expect(method, path, body, status, text):
            got = await call(c, "dc1-s2", method, path, body)
            assert got == (status, text), (method, path, body)

        wan_names = ["dc1-s1.dc1", "dc1-s2.dc1", "dc1-s3.dc1", "dc2-s1.dc2", "dc2-s2.dc2"]
        dc1 = ["dc1-s1", "dc1-s2", "dc1-s3"]
        dc2 = ["dc2-s1", "dc2-s2"]

        def every_member_fails(message):
            lines = []
            for pool, names in (("WAN", wan_names), ("dc1 (LAN)", dc1), ("dc2 (LAN)", dc2)):
                lines.append(f"{pool} error: {len(names)}/{len(names)} nodes reported failure")
                lines.extend(f"{n}: {message}" for n in names)
            body = "".join(f"\t* {line}\n" for line in lines)
            return f"{len(lines)} errors occurred:\n{body}\n"

        # key size (decodes, wrong length): every member of every pool refuses.
        bad = "AAAAAAAAAAAAAAAAAAAA"  # 15 bytes
        await expect(
            "POST", KEYRING, key_body(bad), 500,
            every_member_fails("key size must be 16, 24 or 32 bytes"),
        )  # fmt: skip
        # bad base64: no query is sent, but every pool reports the decoder's error (Consul's
        # keyring answer is per pool: serf's key manager fails before querying)
        per_pool = "".join(
            f"\t* {pool} error: illegal base64 data at input byte 3\n"
            for pool in ("WAN", "dc1 (LAN)", "dc2 (LAN)")
        )
        await expect(
            "POST", KEYRING, key_body("not base64!"), 500, f"3 errors occurred:\n{per_pool}\n"
        )
        # use of a key not installed
        await expect(
            "PUT", KEYRING, key_body(K3), 500,
            every_member_fails("Requested key is not in the keyring"),
        )  # fmt: skip
        # removal of the primary key
        await expect(
            "DELETE", KEYRING, key_body(K1), 500,
            every_member_fails("Removing the primary key is not allowed"),
        )  # fmt: skip
        # request decoding and parameters
        await expect("POST", KEYRING, b"", 400, "Request decode failed: EOF")
        await expect(
            "POST", KEYRING, b'{"Key": "x", "Bogus": 1}', 400,
            'Request decode failed: json: unknown field "Bogus"',
        )  # fmt: skip
        await expect(
            "GET", KEYRING + "?relay-factor=x", b"", 400,
            'Error parsing relay factor: strconv.Atoi: parsing "x": invalid syntax',
        )  # fmt: skip
        await expect(
            "GET", KEYRING + "?relay-factor=6", b"", 400,
            "Invalid relay-factor: Relay factor must be in range: [0, 5]",
        )  # fmt: skip
        await expect(
            "GET", KEYRING + "?local-only=maybe", b"", 400,
            'Error parsing local-only: strconv.ParseBool: parsing "maybe": invalid syntax',
        )  # fmt: skip
        await expect(
            "POST", KEYRING + "?local-only=true", key_body(K2), 400,
            "Invalid use of local-only: local-only can only be set for list requests",
        )  # fmt: skip
        # relay-factor in range is accepted
        assert (await call(c, "dc1-s2", "GET", KEYRING + "?relay-factor=5"))[0] == 200
        # nothing changed
        for e in await get_json(c, "dc1-s1", KEYRING):
            n = e["NumNodes"]
            assert e["Keys"] == {K1: n}

    run(body, datacenters=(("dc1", 3), ("dc2", 2)))


def test_encryption_not_enabled():
    async def body(c):
        await settled(c)
        status, text = await call(c, "dc1-s1", "GET", KEYRING)
        assert status == 500
        assert text.startswith("9 errors occurred:\n\t* WAN error: 3/3 nodes reported failure\n")
        for name in ("dc1-s1.dc1", "dc1-s2.dc1", "dc2-s1.dc2", "dc1-s1", "dc1-s2", "dc2-s1"):
            assert f"\t* {name}: Keyring is empty (encryption not enabled)\n" in text
        status, text = await call(c, "dc1-s1", "POST", KEYRING, key_body(K2))
        assert status == 500
        assert "\t* dc1 (LAN) error: 2/2 nodes reported failure\n" in text
        assert "\t* dc1-s2: No keyring to modify (encryption not enabled)\n" in text
        assert "\t* dc2-s1.dc2: No keyring to modify (encryption not enabled)\n" in text
        status, text = await call(c, "dc1-s1", "GET", KEYRING + "?local-only=true")
        assert (status, text) == (
            500,
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/2 nodes reported failure\n"
            "\t* dc1-s1: Keyring is empty (encryption not enabled)\n"
            "\t* dc1-s2: Keyring is empty (encryption not enabled)\n\n",
        )

    run(body, datacenters=(("dc1", 2), ("dc2", 1)), encrypt=None)


def test_keyring_acl():
    from consim.acl import ACLConfig, ACLToken

    async def body(c):
        await settled(c)
        status, text = await call(c, "dc1-s1", "GET", KEYRING)
        assert (status, text) == (
            403,
            "Permission denied: anonymous token lacks permission 'keyring:read'. The anonymous "
            "token is used implicitly when a request does not specify a token.",
        )
        status, text = await call(c, "dc1-s1", "POST", KEYRING, key_body(K2))
        assert status == 403 and "lacks permission 'keyring:write'" in text
        status, text = await call(c, "dc1-s1", "GET", KEYRING + "?token=nope")
        assert (status, text) == (403, "ACL not found")
        reader = {"X-Consul-Token": "reader-secret"}
        assert (await call(c, "dc1-s1", "GET", KEYRING, headers=reader))[0] == 200
        status, text = await call(c, "dc1-s1", "PUT", KEYRING, key_body(K1), headers=reader)
        assert (status, text) == (
            403,
            "Permission denied: token with AccessorID 'reader-accessor' lacks permission "
            "'keyring:write'",
        )
        mgmt = {"X-Consul-Token": "root"}
        assert (await call(c, "dc1-s1", "GET", KEYRING, headers=mgmt))[0] == 200
        assert await call(c, "dc1-s1", "POST", KEYRING, key_body(K2), headers=mgmt) == (200, "")

    run(
        body,
        datacenters=(("dc1", 2),),
        acl=ACLConfig(
            enabled=True,
            default_policy="deny",
            initial_management="root",
            tokens=(ACLToken("reader-accessor", "reader-secret", keyring="read"),),
        ),
    )


def test_relay_factor_reaches_the_serf_query():
    """?relay-factor=N is serf's RelayFactor: the other members have N peers relay each answer."""

    async def body(c):
        await settled(c)

        def relayed():
            return sum(
                pool.core.counters["responses_relayed"]
                for n in c.servers.values()
                for pool in (n.lan_pool, n.wan_pool)
                if pool is not None and pool.core is not None
            )

        before = relayed()
        assert (await get_json(c, "dc1-s1", KEYRING + "?relay-factor=2"))[0]["NumNodes"] == 3
        await trio.sleep(2)
        return before, relayed()

    (before, after), _ = run(body)
    # WAN pool and LAN pool of dc1, 3 servers each: 2 other members x 2 relays per pool
    assert after - before == 2 * 2 * 2, (before, after)
