"""The gossip keyring and memberlist's AES-GCM packet sealing.

Wire layout of a sealed packet (memberlist ``security.go``, encryption version 1)::

    [version byte = 1][12-byte nonce][AES-GCM ciphertext + 16-byte tag]

The primary key seals; opening tries every installed key in order (primary first).

Nonces come from the ``random.Random`` the caller passes in, not from ``os.urandom``. That is a
deliberate simulator choice: a virtual-time run must produce the same bytes for the same seed, and
the keys in a simulation protect nothing. A predictable nonce would be unacceptable in real
software (AES-GCM's security rests on nonces never repeating under one key and on attackers not
steering them); a seeded Mersenne Twister yields 96-bit nonces that do not repeat in practice,
which is all the simulation needs for ciphertexts to be valid and distinct.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
# Smallest possible sealed packet: version + nonce + tag of an empty plaintext.
MIN_SEALED_SIZE = 1 + NONCE_SIZE + TAG_SIZE

ERR_KEY_SIZE = "key size must be 16, 24 or 32 bytes"
ERR_NO_KEY_DECRYPTS = "no installed keys could decrypt the message"
ERR_KEY_NOT_INSTALLED = "Requested key is not in the keyring"
ERR_REMOVE_PRIMARY = "Removing the primary key is not allowed"
ERR_NO_KEYRING = "No keyring to modify (encryption not enabled)"
ERR_EMPTY_KEYRING = "Keyring is empty (encryption not enabled)"


class KeyringError(ValueError):
    """A keyring rule was broken; ``str(err)`` is memberlist's/serf's exact text."""


_STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECODE_MAP = {c: i for i, c in enumerate(_STD_ALPHABET)}


def go_base64_decode(text: str) -> bytes:
    """Decode like Go's ``base64.StdEncoding.DecodeString``, raising its error text.

    Python's decoder is laxer (it skips junk) and words its errors differently; Consul users see
    Go's ``illegal base64 data at input byte N``, where N is a byte offset into the input.
    Behaviour mirrored: CR/LF are skipped anywhere, padding is required, a quantum cut short at
    the end points at its first byte, wrong or trailing padding points at the offending byte.
    """
    src = text.encode("utf-8")
    n = len(src)
    si = 0
    out = bytearray()

    def corrupt(offset: int) -> KeyringError:
        return KeyringError(f"illegal base64 data at input byte {offset}")

    while True:
        vals: list[int] = []
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                # StdEncoding pads, so any short final quantum is corrupt at its start.
                raise corrupt(si - j)
            c = src[si]
            si += 1
            if c in _DECODE_MAP:
                vals.append(_DECODE_MAP[c])
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D:  # '='
                raise corrupt(si - 1)
            # Padding: only valid after 2 or 3 symbols.
            if j in (0, 1):
                raise corrupt(si - 1)
            if j == 2:
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    raise corrupt(n)
                if src[si] != 0x3D:
                    raise corrupt(si - 1)
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            if si < n:
                raise corrupt(si)
            break
        value = 0
        for k in range(4):
            value = (value << 6) | (vals[k] if k < len(vals) else 0)
        chunk = value.to_bytes(3, "big")
        out += chunk[: len(vals) - 1] if len(vals) < 4 else chunk
        if len(vals) < 4:
            return bytes(out)


def validate_key(key: bytes) -> None:
    """memberlist's ValidateKey: only AES-128/192/256 key sizes."""
    if len(key) not in (16, 24, 32):
        raise KeyringError(ERR_KEY_SIZE)


def decode_key(key_b64: str) -> bytes:
    """Base64 (Go's rules) then size check; both errors carry Consul's exact text."""
    key = go_base64_decode(key_b64)
    validate_key(key)
    return key


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


class Keyring:
    """Installed keys, primary first (memberlist ``keyring.go``)."""

    def __init__(self, keys: list[bytes] | None = None, primary: bytes | None = None) -> None:
        self._keys: list[bytes] = []
        for key in keys or []:
            self.add_key(key)
        if primary is not None:
            self.add_key(primary)
            self.use_key(primary)

    @classmethod
    def from_b64(cls, keys_b64: list[str]) -> Keyring:
        return cls([decode_key(k) for k in keys_b64])

    @property
    def keys(self) -> list[bytes]:
        return list(self._keys)

    @property
    def primary_key(self) -> bytes | None:
        return self._keys[0] if self._keys else None

    def keys_b64(self) -> list[str]:
        return [b64(k) for k in self._keys]

    def add_key(self, key: bytes) -> None:
        """Install a key; already installed is a no-op; the first key becomes primary."""
        validate_key(key)
        if key not in self._keys:
            self._keys.append(key)

    def use_key(self, key: bytes) -> None:
        if key not in self._keys:
            raise KeyringError(ERR_KEY_NOT_INSTALLED)
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove_key(self, key: bytes) -> None:
        if self._keys and key == self._keys[0]:
            raise KeyringError(ERR_REMOVE_PRIMARY)
        if key in self._keys:
            self._keys.remove(key)

    def to_json(self) -> str:
        """The ``serf/local.keyring`` format: a JSON array of base64 keys, primary first."""
        return json.dumps(self.keys_b64())

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(k, str) for k in data):
            raise KeyringError("keyring file must be a JSON array of base64 strings")
        return cls.from_b64(data)

    # -- sealing ---------------------------------------------------------------------------------

    def seal(self, plaintext: bytes, rng: random.Random, aad: bytes | None = None) -> bytes:
        primary = self.primary_key
        if primary is None:
            raise KeyringError(ERR_EMPTY_KEYRING)
        nonce = rng.randbytes(NONCE_SIZE)
        return bytes([ENCRYPTION_VERSION]) + nonce + AESGCM(primary).encrypt(nonce, plaintext, aad)

    def open(self, packet: bytes, aad: bytes | None = None) -> bytes:
        """Decrypt with each installed key in turn; KeyringError with memberlist's text if none."""
        if len(packet) < MIN_SEALED_SIZE or packet[0] != ENCRYPTION_VERSION:
            raise KeyringError(ERR_NO_KEY_DECRYPTS)
        nonce = packet[1 : 1 + NONCE_SIZE]
        body = packet[1 + NONCE_SIZE :]
        for key in self._keys:
            try:
                return AESGCM(key).decrypt(nonce, body, aad)
            except InvalidTag:
                continue
        raise KeyringError(ERR_NO_KEY_DECRYPTS)


def fingerprint(key: bytes) -> str:
    """A short, non-secret name for a key in events (never log the key itself)."""
    return hashlib.sha256(key).hexdigest()[:8]
