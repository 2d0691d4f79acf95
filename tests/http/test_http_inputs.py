"""Hostile inputs get Consul's 400/413 texts (Go's strconv and encoding/json), never a 500.

In process (virtual time) against the app; the live server's side of the same inputs is in
test_http_server_live.py.
"""

from __future__ import annotations

import json

import pytest

from consim.golike import GoError, JSONBigNumber, decode_json_value, parse_duration, parse_uint

BIG = "1" + "0" * 5000  # Python refuses int() on more than 4300 digits
KV_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"


@pytest.mark.parametrize(
    "path, text",
    [
        (f"/v1/kv/x?index={BIG}", "Invalid index"),
        (f"/v1/kv/x?wait={BIG}s", "Invalid wait time"),
        (f"/v1/kv/x?max_stale={BIG}s", f'Invalid max_stale value "{BIG}s"'),
    ],
)
async def test_huge_query_numbers_are_400(client, agent, path, text):
    status, _, body = await client("GET", path)
    assert (status, body.decode()) == (400, text)
    assert agent.internal_errors == []


async def test_huge_relay_factor_and_cas_are_400(client, agent):
    status, _, body = await client("GET", f"/v1/operator/keyring?relay-factor={BIG}")
    assert (status, body.decode()) == (
        400,
        f'Error parsing relay factor: strconv.Atoi: parsing "{BIG}": value out of range',
    )
    status, _, body = await client(
        "PUT", f"/v1/operator/autopilot/configuration?cas={BIG}", body=b"{}"
    )
    assert (status, body.decode()) == (
        400,
        f'Error parsing cas value: strconv.ParseUint: parsing "{BIG}": value out of range',
    )
    assert agent.internal_errors == []


@pytest.mark.parametrize(
    "field, value, text",
    [
        (
            "MaxTrailingLogs",
            BIG,
            f"json: cannot unmarshal number {BIG} into Go struct field "
            "AutopilotConfiguration.MaxTrailingLogs of type uint64",
        ),
        (
            "MinQuorum",
            str(1 << 64),
            f"json: cannot unmarshal number {1 << 64} into Go struct field "
            "AutopilotConfiguration.MinQuorum of type uint64",
        ),
        (
            "LastContactThreshold",
            BIG,
            f'strconv.ParseFloat: parsing "{BIG}": value out of range',
        ),
    ],
)
async def test_huge_json_numbers_are_400(client, agent, field, value, text):
    body = f'{{"{field}": {value}}}'.encode()
    status, _, got = await client("PUT", "/v1/operator/autopilot/configuration", body=body)
    assert (status, got.decode()) == (400, f"Error parsing autopilot config: {text}")
    assert not [c for c in agent.calls if c[0] == "Operator.AutopilotSetConfiguration"]


async def test_huge_json_number_for_keyring_relay_factor(client, agent):
    body = f'{{"Key": "k", "RelayFactor": {BIG}}}'.encode()
    status, _, got = await client("POST", "/v1/operator/keyring", body=body)
    assert (status, got.decode()) == (
        400,
        f"Request decode failed: json: cannot unmarshal number {BIG} into Go struct field "
        "keyringArgs.RelayFactor of type uint8",
    )


@pytest.mark.parametrize(
    "body, text",
    [
        (
            b"[" * 5000 + b"]" * 5000,
            "Error parsing autopilot config: json: cannot unmarshal array into Go value of type "
            "api.AutopilotConfiguration",
        ),
        (
            b'{"RedundancyZoneTag": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            "Error parsing autopilot config: json: cannot unmarshal array into Go struct field "
            "AutopilotConfiguration.RedundancyZoneTag of type string",
        ),
        (
            b"[" * 10001 + b"]" * 10001,
            "Error parsing autopilot config: invalid character '[' exceeded max depth",
        ),
    ],
)
async def test_deeply_nested_json_is_400(client, agent, body, text):
    status, _, got = await client("PUT", "/v1/operator/autopilot/configuration", body=body)
    assert (status, got.decode()) == (400, text)
    assert agent.internal_errors == []


async def test_lone_surrogate_escapes_decode_as_replacement_characters(client, agent):
    # Python keeps "\udcff" as a surrogate, which no UTF-8 encoder (msgpack, SQLite) accepts:
    # the server answered 500 "'utf-8' codec can't encode character ...". Go decodes U+FFFD.
    agent.replies["keyring"] = [{"WAN": True, "Error": ""}]
    status, _, _ = await client("POST", "/v1/operator/keyring", body=b'{"Key": "\\udcff"}')
    assert status == 200
    assert agent.last_args["key"] == "\ufffd"


async def test_long_host_header_is_routed(client, agent):
    agent.replies["Status.Leader"] = "127.0.0.1:8300"
    status, _, body = await client("GET", "/v1/status/leader", {"Host": "h" * 2000})
    assert (status, body) == (200, b'"127.0.0.1:8300"')
    assert agent.internal_errors == []


async def test_kv_body_limits(client, agent):
    agent.replies["KVS.Apply"] = {"Result": True, "Index": 3}
    status, _, body = await client("PUT", "/v1/kv/x", body=b"a" * (600 * 1024))
    assert (status, body.decode()) == (
        413,
        f"Request body({600 * 1024} bytes) too large, max size: 524288 bytes. See {KV_DOC}.",
    )
    status, _, body = await client(
        "PUT", "/v1/kv/x", {"Transfer-Encoding": "chunked"}, body=b"a" * (1 << 20)
    )
    assert (status, body.decode()) == (
        413,
        f"Request body too large, max size: 524288 bytes. See {KV_DOC}.",
    )
    assert not [c for c in agent.calls if c[0] == "KVS.Apply"]
    status, _, body = await client("PUT", "/v1/kv/x", body=b"a" * (512 * 1024))
    assert (status, body) == (200, b"true")


async def test_other_bodies_over_the_limit_get_the_decoders_400(client, agent):
    big = b'{"Key": "' + b"a" * (600 * 1024) + b'"}'
    status, _, body = await client("POST", "/v1/operator/keyring", body=big)
    assert (status, body.decode()) == (400, "Request decode failed: http: request body too large")
    status, _, body = await client(
        "PUT", "/v1/operator/autopilot/configuration", {"Transfer-Encoding": "chunked"}, body=big
    )
    assert (status, body.decode()) == (
        400,
        "Error parsing autopilot config: http: request body too large",
    )
    assert not [c for c in agent.calls if c[0] == "keyring"]


async def test_default_acl_policy_header_on_api_answers_only(client, agent):
    agent.replies["Status.Leader"] = "127.0.0.1:8300"
    for method, path in [
        ("GET", "/v1/status/leader"),
        ("PATCH", "/v1/status/leader"),
        ("OPTIONS", "/v1/status/leader"),
        ("GET", f"/v1/kv/x?index={BIG}"),
    ]:
        _, headers, _ = await client(method, path)
        assert headers["x-consul-default-acl-policy"] == "allow", (method, path)
    agent.default_acl_policy = "deny"
    from consim.http.app import create_app
    from consim.http.inprocess import request

    _, headers, _ = await request(create_app(agent), "GET", "/v1/status/leader")
    assert headers["x-consul-default-acl-policy"] == "deny"
    for path in ("/", "/v1/nope"):
        _, headers, _ = await request(create_app(agent), "GET", path)
        assert "x-consul-default-acl-policy" not in headers


# --------------------------------------------------------------------------- golike


def test_strconv_and_durations_on_huge_digits():
    assert parse_uint("0" * 5000 + "7") == 7  # leading zeros are fine in Go
    with pytest.raises(GoError, match="value out of range"):
        parse_uint(BIG)
    with pytest.raises(GoError, match='^time: invalid duration "1000'):
        parse_duration(BIG + "s")
    assert parse_duration("1." + "0" * 5000 + "1s") == 1.0


def test_json_numbers_depth_and_surrogates():
    value = decode_json_value(BIG.encode())
    assert isinstance(value, JSONBigNumber) and str(value) == BIG and f"{value}" == BIG
    assert isinstance(decode_json_value(b"1e999"), JSONBigNumber)
    assert decode_json_value(b"[" * 10000 + b"]" * 10000) is not None
    with pytest.raises(GoError, match="^invalid character '\\{' exceeded max depth$"):
        decode_json_value(b'{"a":' * 10001 + b"1" + b"}" * 10001)
    assert decode_json_value(json.dumps("\U0001f600").encode()) == "\U0001f600"  # a pair: kept
    assert decode_json_value(b'{"\\ud800": ["\\udfff x"]}') == {"\ufffd": ["\ufffd x"]}
