"""Keyring rules, Go base64 errors, memberlist's sealed wire layout."""

from __future__ import annotations

import json
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consim.gossip.keyring import (
    ERR_KEY_NOT_INSTALLED,
    ERR_KEY_SIZE,
    ERR_NO_KEY_DECRYPTS,
    ERR_REMOVE_PRIMARY,
    Keyring,
    KeyringError,
    decode_key,
    go_base64_decode,
)

from .helpers import K1, K1_B64, K2, K2_B64, K3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abcd!efg", "illegal base64 data at input byte 4"),
        ("abc", "illegal base64 data at input byte 0"),
        ("ab=c", "illegal base64 data at input byte 2"),
        ("ab=", "illegal base64 data at input byte 3"),
        ("abcd====", "illegal base64 data at input byte 4"),
        ("ab==x", "illegal base64 data at input byte 4"),
        ("not base64", "illegal base64 data at input byte 3"),
    ],
)
def test_go_base64_errors(text: str, error: str) -> None:
    with pytest.raises(KeyringError) as info:
        go_base64_decode(text)
    assert str(info.value) == error


def test_go_base64_accepts_valid_and_newlines() -> None:
    assert go_base64_decode(K1_B64) == K1
    assert go_base64_decode(K1_B64[:8] + "\r\n" + K1_B64[8:]) == K1
    assert go_base64_decode("") == b""


def test_key_size_rule() -> None:
    with pytest.raises(KeyringError, match=f"^{ERR_KEY_SIZE}$"):
        decode_key("AAAA")  # 3 bytes
    assert ERR_KEY_SIZE == "key size must be 16, 24 or 32 bytes"
    for key in (K1, K2, K3):
        Keyring([key])


def test_keyring_rules_and_texts() -> None:
    ring = Keyring()
    ring.add_key(K1)
    assert ring.primary_key == K1  # first installed becomes primary
    ring.add_key(K2)
    ring.add_key(K2)  # no-op
    assert ring.keys == [K1, K2]
    with pytest.raises(KeyringError) as info:
        ring.use_key(K3)
    assert str(info.value) == ERR_KEY_NOT_INSTALLED == "Requested key is not in the keyring"
    with pytest.raises(KeyringError) as info:
        ring.remove_key(K1)
    assert str(info.value) == ERR_REMOVE_PRIMARY == "Removing the primary key is not allowed"
    ring.remove_key(K3)  # not installed: success
    ring.use_key(K2)
    assert ring.keys == [K2, K1]
    ring.remove_key(K1)
    assert ring.keys == [K2]


def test_json_roundtrip_primary_first() -> None:
    ring = Keyring([K1, K2])
    ring.use_key(K2)
    text = ring.to_json()
    assert json.loads(text) == [K2_B64, K1_B64]
    again = Keyring.from_json(text)
    assert again.keys == [K2, K1] and again.primary_key == K2


def test_sealed_wire_layout() -> None:
    ring = Keyring([K1])
    rng = random.Random(5)
    plaintext = b"\x91\x81\xa1t\xa4ping"
    packet = ring.seal(plaintext, rng)
    assert packet[0] == 1  # encryption version
    nonce = packet[1:13]
    assert nonce == random.Random(5).randbytes(12)  # nonce from the passed rng: reproducible
    assert len(packet) == 1 + 12 + len(plaintext) + 16  # ciphertext + 16-byte GCM tag
    assert AESGCM(K1).decrypt(nonce, packet[13:], None) == plaintext
    assert ring.open(packet) == plaintext


@pytest.mark.parametrize("key", [K1, K2, K3])
def test_open_tries_every_installed_key(key: bytes) -> None:
    sender = Keyring([key])
    packet = sender.seal(b"hello", random.Random(1))
    receiver = Keyring([k for k in (K1, K2, K3) if k != key] + [key])
    assert receiver.primary_key != key
    assert receiver.open(packet) == b"hello"


def test_open_fails_with_memberlist_text() -> None:
    packet = Keyring([K1]).seal(b"hello", random.Random(1))
    for bad in (packet, b"\x00" * 40, packet[:10]):
        with pytest.raises(KeyringError) as info:
            Keyring([K2]).open(bad)
        assert (
            str(info.value) == ERR_NO_KEY_DECRYPTS == "no installed keys could decrypt the message"
        )
    tampered = packet[:-1] + bytes([packet[-1] ^ 1])
    with pytest.raises(KeyringError):
        Keyring([K1]).open(tampered)
