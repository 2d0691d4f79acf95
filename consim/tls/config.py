"""The agent's TLS settings (Consul's ``ca_file``, ``cert_file``, ``key_file``,
``verify_incoming``, ``verify_outgoing``, ``verify_server_hostname``) and the SSL contexts they
make.

As Consul: with a certificate and key a server accepts TLS on its port (first byte 3,
``RPCTLS``, then the handshake, then the inner first byte inside TLS); ``verify_incoming``
requires every connection to be TLS with a client certificate signed by the CA (a plaintext
connection is refused and counted); ``verify_outgoing`` makes the server dial its peers with
TLS, checking their certificate against the CA; ``verify_server_hostname`` also checks that it
names ``server.<datacenter>.<domain>``. ``auto`` (consim's own) makes a CA and a server
certificate per datacenter in memory, for tests and scenario files.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOMAIN = "consul"


class TLSConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TLSConfig:
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    # per-datacenter certificates (auto): dc -> (cert, key); else cert_pem/key_pem for all
    certs: tuple[tuple[str, bytes, bytes], ...] = ()
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    domain: str = DOMAIN
    _contexts: dict[Any, ssl.SSLContext] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @property
    def enabled(self) -> bool:
        return bool(self.certs) or (self.cert_pem is not None and self.key_pem is not None)

    def server_name(self, datacenter: str) -> str:
        return f"server.{datacenter}.{self.domain}"

    def _pair(self, datacenter: str) -> tuple[bytes, bytes]:
        for dc, cert, key in self.certs:
            if dc == datacenter:
                return cert, key
        if self.cert_pem is None or self.key_pem is None:
            raise TLSConfigError(f"no certificate for datacenter {datacenter}")
        return self.cert_pem, self.key_pem

    def _load(self, ctx: ssl.SSLContext, datacenter: str) -> None:
        cert, key = self._pair(datacenter)
        # ssl loads a key pair only from files: a private temporary one, removed at once.
        fd, path = tempfile.mkstemp(prefix="consim-tls-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(cert + b"\n" + key)
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        if self.ca_pem is not None:
            ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))

    def server_context(self, datacenter: str) -> ssl.SSLContext:
        """What a server accepts TLS with (client certificates required with verify_incoming)."""
        return self._context("server", datacenter)

    def client_context(self, datacenter: str) -> ssl.SSLContext:
        """What a server dials its peers with (its own certificate, the CA to check theirs)."""
        return self._context("client", datacenter)

    def _context(self, side: str, datacenter: str) -> ssl.SSLContext:
        # One per side and datacenter, made on first use (loading the key pair costs a file).
        key = (side, datacenter)
        ctx = self._contexts.get(key)
        if ctx is None:
            server = side == "server"
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._load(ctx, datacenter)
            if not server:
                # Before verify_mode: CERT_NONE is refused while check_hostname is on.
                ctx.check_hostname = self.verify_server_hostname
            verify = self.verify_incoming if server else self.verify_outgoing
            ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
            self._contexts[key] = ctx
        return ctx

    @classmethod
    def auto(
        cls, datacenters: list[str], *, verify: bool = True, domain: str = DOMAIN
    ) -> TLSConfig:
        """A fresh CA and one server certificate per datacenter, every check on (``verify``)."""
        from consim.tls.certs import create_ca, create_cert

        ca = create_ca(domain=domain)
        certs = []
        for dc in datacenters:
            pem = create_cert(ca, datacenter=dc, domain=domain)
            certs.append((dc, pem.cert, pem.key))
        return cls(
            ca_pem=ca.cert,
            certs=tuple(certs),
            verify_incoming=verify,
            verify_outgoing=verify,
            verify_server_hostname=verify,
            domain=domain,
        )

    @classmethod
    def from_dict(
        cls, obj: Any, *, datacenters: list[str], base: Path | None = None, source: str = "tls"
    ) -> TLSConfig:
        """``{ca_file, cert_file, key_file, verify_incoming, verify_outgoing,
        verify_server_hostname}`` or ``{auto = true, ...verify flags}``."""
        if not isinstance(obj, Mapping):
            raise TLSConfigError(f"{source}: must be a table")
        known = {
            "auto",
            "ca_file",
            "cert_file",
            "key_file",
            "verify_incoming",
            "verify_outgoing",
            "verify_server_hostname",
        }
        for k in obj:
            if k not in known:
                raise TLSConfigError(
                    f"{source}.{k}: unknown field (expected one of {sorted(known)})"
                )
        flags = {}
        for k in ("verify_incoming", "verify_outgoing", "verify_server_hostname"):
            v = obj.get(k, False)
            if not isinstance(v, bool):
                raise TLSConfigError(f"{source}.{k}: must be true or false")
            flags[k] = v
        if flags["verify_server_hostname"] and not flags["verify_outgoing"]:
            raise TLSConfigError(f"{source}.verify_server_hostname: needs verify_outgoing")
        auto = obj.get("auto", False)
        if not isinstance(auto, bool):
            raise TLSConfigError(f"{source}.auto: must be true or false")
        if auto:
            if any(k in obj for k in ("ca_file", "cert_file", "key_file")):
                raise TLSConfigError(f"{source}.auto: not with ca_file/cert_file/key_file")
            made = cls.auto(datacenters, verify=False)
            return cls(ca_pem=made.ca_pem, certs=made.certs, **flags)

        def read(name: str) -> bytes | None:
            value = obj.get(name)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise TLSConfigError(f"{source}.{name}: must be a file name")
            path = Path(value)
            if base is not None and not path.is_absolute():
                path = base / path
            try:
                return path.read_bytes()
            except OSError as exc:
                raise TLSConfigError(f"{source}.{name}: {exc.strerror}: {path}") from None

        ca, cert, key = read("ca_file"), read("cert_file"), read("key_file")
        if (cert is None) != (key is None):
            raise TLSConfigError(f"{source}: cert_file and key_file go together")
        if (flags["verify_incoming"] or flags["verify_outgoing"]) and ca is None:
            raise TLSConfigError(f"{source}.ca_file: needed to verify certificates")
        if (flags["verify_incoming"] or flags["verify_outgoing"]) and cert is None:
            raise TLSConfigError(f"{source}.cert_file: needed with verify_incoming/outgoing")
        config = cls(ca_pem=ca, cert_pem=cert, key_pem=key, **flags)
        if config.enabled:
            for dc in datacenters:  # refuse a bad file now, not at the first connection
                try:
                    config.server_context(dc)
                    config.client_context(dc)
                except (ssl.SSLError, OSError, ValueError) as exc:
                    raise TLSConfigError(f"{source}: cannot load the certificates: {exc}") from None
        return config
