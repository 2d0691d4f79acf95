"""``consim tls ca create`` and ``consim tls cert create`` as ``consul tls`` does them, and the
TLS options of ``consim up`` (Consul's ``ca_file``, ``cert_file``, ``key_file``,
``verify_incoming``, ``verify_outgoing``, ``verify_server_hostname``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."""


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def cmd_ca_create(args: argparse.Namespace) -> int:
    from consim.tls.certs import ca_file_names, create_ca

    cert_name, key_name = ca_file_names(args.domain)
    for name in (cert_name, key_name):
        if Path(name).exists():
            print(f"{name} already exists.", file=sys.stderr)
            return 1
    ca = create_ca(domain=args.domain, days=args.days, name_constraint=args.name_constraint)
    _write(Path(cert_name), ca.cert, 0o644)
    print(f"==> Saved {cert_name}")
    _write(Path(key_name), ca.key, 0o600)
    print(f"==> Saved {key_name}")
    return 0


def cmd_cert_create(args: argparse.Namespace) -> int:
    from consim.tls.certs import Pem, ca_file_names, cert_file_names, create_cert

    kinds = [k for k in ("server", "client") if getattr(args, k)]
    if len(kinds) != 1:
        print("Please provide either -server or -client", file=sys.stderr)
        return 1
    kind = kinds[0]
    default_cert, default_key = ca_file_names(args.domain)
    ca_path, key_path = Path(args.ca or default_cert), Path(args.key or default_key)
    try:
        ca = Pem(ca_path.read_bytes(), key_path.read_bytes())
    except OSError as exc:
        print(f"Error reading CA: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    n = 0
    while any(Path(f).exists() for f in cert_file_names(args.dc, kind, args.domain, n)):
        n += 1
    cert_name, key_name = cert_file_names(args.dc, kind, args.domain, n)
    try:
        pem = create_cert(
            ca,
            datacenter=args.dc,
            kind=kind,
            domain=args.domain,
            days=args.days,
            dns_names=tuple(args.additional_dnsname),
            ip_addresses=tuple(args.additional_ipaddress),
        )
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if kind == "server":
        print(SERVER_WARNING)
    print(f"==> Using {ca_path} and {key_path}")
    _write(Path(cert_name), pem.cert, 0o644)
    print(f"==> Saved {cert_name}")
    _write(Path(key_name), pem.key, 0o600)
    print(f"==> Saved {key_name}")
    return 0


def register_tls_command(sub: Any) -> None:
    """``consim tls ca create`` / ``consim tls cert create`` (Consul's single-dash flags)."""
    tls = sub.add_parser("tls", help="consul tls ca create | cert create (certificates)")
    tls_sub = tls.add_subparsers(dest="tls_command", required=True)
    ca = tls_sub.add_parser("ca", help="consul tls ca ...").add_subparsers(
        dest="ca_command", required=True
    )
    ca_create = ca.add_parser("create", help="create a CA (consul-agent-ca.pem, -key.pem)")
    ca_create.add_argument("-days", type=int, default=1825)
    ca_create.add_argument("-domain", default="consul")
    ca_create.add_argument("-name-constraint", dest="name_constraint", action="store_true")
    ca_create.set_defaults(func=cmd_ca_create)
    cert = tls_sub.add_parser("cert", help="consul tls cert ...").add_subparsers(
        dest="cert_command", required=True
    )
    cert_create = cert.add_parser("create", help="create a server or client certificate")
    cert_create.add_argument("-server", action="store_true")
    cert_create.add_argument("-client", action="store_true")
    cert_create.add_argument("-dc", default="dc1")
    cert_create.add_argument("-domain", default="consul")
    cert_create.add_argument("-days", type=int, default=365)
    cert_create.add_argument("-ca", default="")
    cert_create.add_argument("-key", default="")
    cert_create.add_argument(
        "-additional-dnsname", dest="additional_dnsname", action="append", default=[]
    )
    cert_create.add_argument(
        "-additional-ipaddress", dest="additional_ipaddress", action="append", default=[]
    )
    cert_create.set_defaults(func=cmd_cert_create)


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """``consim up``'s TLS options (Consul's agent configuration keys)."""
    g = parser.add_argument_group("TLS on the server port (Consul's agent TLS settings)")
    g.add_argument("--ca-file", help="CA certificate (PEM) to verify peers with")
    g.add_argument("--cert-file", help="the servers' certificate (PEM)")
    g.add_argument("--key-file", help="the servers' private key (PEM)")
    g.add_argument("--verify-incoming", action="store_true", help="accept TLS peers only")
    g.add_argument("--verify-outgoing", action="store_true", help="check the peers' certificates")
    g.add_argument(
        "--verify-server-hostname",
        action="store_true",
        help="check that a peer's certificate names server.<dc>.consul",
    )
    g.add_argument(
        "--tls-auto", action="store_true", help="make a CA and certificates in memory (consim's)"
    )


def tls_from_args(args: argparse.Namespace, datacenters: list[str]) -> Any:
    """The TLSConfig of ``consim up``'s options, or None; raises TLSConfigError."""
    from consim.tls.config import TLSConfig

    table: dict[str, Any] = {}
    for name in ("ca_file", "cert_file", "key_file"):
        if getattr(args, name, None):
            table[name] = getattr(args, name)
    for name in ("verify_incoming", "verify_outgoing", "verify_server_hostname"):
        if getattr(args, name, False):
            table[name] = True
    if getattr(args, "tls_auto", False):
        table["auto"] = True
    if not table:
        return None
    return TLSConfig.from_dict(table, datacenters=datacenters, source="--tls options")
