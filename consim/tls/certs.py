"""Certificates as ``consul tls ca create`` / ``consul tls cert create`` make them.

A CA: an ECDSA P-256 key, a self-signed certificate named ``Consul Agent CA <serial>``, valid
``days`` (1825), with a name constraint to ``<domain>`` and ``localhost`` when asked. A server
certificate for datacenter ``dc``: ``server.<dc>.<domain>`` as common name and DNS name, plus
``localhost`` and IP 127.0.0.1, valid ``days`` (365), for server and client authentication (a
server dials other servers with it); a client certificate likewise for ``client.<dc>.<domain>``.
The file names are Consul's: ``<domain>-agent-ca.pem`` / ``-key.pem``, ``<dc>-server-<domain>-<n>
.pem`` / ``-key.pem`` with the first free ``n``.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DOMAIN = "consul"
CA_DAYS = 1825
CERT_DAYS = 365


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    serial: int,
    days: int,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What a CA and a leaf certificate share: valid from a minute ago for ``days``,
    basic constraints and key usage (a CA signs certificates and CRLs, a leaf signs and
    enciphers keys), as consul tls makes them."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def create_ca(
    *, domain: str = DEFAULT_DOMAIN, days: int = CA_DAYS, name_constraint: bool = False
) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Consul Agent CA {serial}")])
    builder = _builder(name, name, key.public_key(), serial, days, ca=True).add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    if name_constraint:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(domain), x509.DNSName("localhost")],
                excluded_subtrees=None,
            ),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def create_cert(
    ca: Pem,
    *,
    datacenter: str,
    kind: str = "server",
    domain: str = DEFAULT_DOMAIN,
    days: int = CERT_DAYS,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> Pem:
    """A ``server`` or ``client`` certificate for ``datacenter`` signed by ``ca``."""
    if kind not in ("server", "client"):
        raise ValueError(f"kind must be server or client, not {kind!r}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    common = f"{kind}.{datacenter}.{domain}"
    names: list[x509.GeneralName] = [x509.DNSName(common), x509.DNSName("localhost")]
    names += [x509.DNSName(d) for d in dns_names]
    ips = ("127.0.0.1", *ip_addresses)
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    cert = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]),
            ca_cert.subject,
            key.public_key(),
            int.from_bytes(secrets.token_bytes(16), "big") >> 1,
            days,
            ca=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def ca_file_names(domain: str = DEFAULT_DOMAIN) -> tuple[str, str]:
    return f"{domain}-agent-ca.pem", f"{domain}-agent-ca-key.pem"


def cert_file_names(datacenter: str, kind: str, domain: str, n: int) -> tuple[str, str]:
    prefix = f"{datacenter}-{kind}-{domain}-{n}"
    return f"{prefix}.pem", f"{prefix}-key.pem"
