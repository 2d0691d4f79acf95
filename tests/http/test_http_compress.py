"""Consul's gzip handler around every API endpoint (consim/http/compress.py): ``Vary`` on every
answer of a registered endpoint, gzip for a body of 1400 bytes or more when the client's
Accept-Encoding gives gzip a qvalue above 0; the index page and unknown paths are not wrapped."""

from __future__ import annotations

import gzip
import json

import pytest

from consim.http.compress import MIN_SIZE, accepts_gzip, parse_encodings


def _keys(n: int) -> dict:
    return {"Keys": [f"key/{i:04d}" for i in range(n)]}


async def test_large_body_is_gzipped_when_asked(client, agent):
    agent.replies["KVS.ListKeys"] = _keys(200)
    status, headers, body = await client("GET", "/v1/kv/?keys", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "application/json"
    assert json.loads(gzip.decompress(body)) == _keys(200)["Keys"]


async def test_not_asked_or_refused_is_plain(client, agent):
    agent.replies["KVS.ListKeys"] = _keys(200)
    for accept in (None, "identity", "gzip;q=0", "br", "gzip;q=x"):
        headers = {"Accept-Encoding": accept} if accept else {}
        status, got, body = await client("GET", "/v1/kv/?keys", headers)
        assert status == 200 and "content-encoding" not in got, accept
        assert got["vary"] == "Accept-Encoding"
        assert json.loads(body) == _keys(200)["Keys"]


async def test_small_bodies_stay_plain(client, agent):
    agent.replies["KVS.ListKeys"] = _keys(3)
    status, headers, body = await client("GET", "/v1/kv/?keys", {"Accept-Encoding": "gzip"})
    assert len(body) < MIN_SIZE
    assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"
    assert json.loads(body) == _keys(3)["Keys"]


async def test_errors_and_method_answers_carry_vary_but_not_the_index_page(client, agent):
    ask = {"Accept-Encoding": "gzip"}
    status, headers, _ = await client("POST", "/v1/status/leader", ask)
    assert status == 405 and headers["vary"] == "Accept-Encoding"
    status, headers, _ = await client("OPTIONS", "/v1/status/leader", ask)
    assert status == 200 and headers["vary"] == "Accept-Encoding"
    for path in ("/", "/v1/nope", "/nope"):
        status, headers, _ = await client("GET", path, ask)
        assert "vary" not in headers and "content-encoding" not in headers, path


async def test_a_large_error_text_is_gzipped_too(client, agent):
    from consim.http.agent import RpcError

    agent.replies["KVS.Get"] = RpcError("x" * 2000)
    status, headers, body = await client("GET", "/v1/kv/k", {"Accept-Encoding": "gzip"})
    assert status == 500 and headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert gzip.decompress(body) == b"x" * 2000


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0;level=1", True),  # gziphandler resets the qvalue for every ';' part
        ("gzip;q=nope", False),
        ("gzip;q=1e999", False),  # strconv.ErrRange
        ("*", False),  # gziphandler looks for "gzip" only
        ("", False),
    ],
)
def test_accept_encoding_parsed_as_gziphandler_does(value, accepted):
    assert accepts_gzip(value) is accepted


def test_parse_encodings_keeps_qvalues():
    assert parse_encodings("gzip;q=0.5, br;q=2, , x") == {"gzip": 0.5, "br": 1.0, "x": 1.0}
