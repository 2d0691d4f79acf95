"""``consim agent``'s configuration: Consul's command-line flags (Go's ``flag`` package rules) and
its configuration files (JSON or HCL, ``-config-file`` / ``-config-dir``), merged as Consul merges
them (files in the order given, a directory's ``.json``/``.hcl`` files in lexical order, then the
flags on top; lists such as ``retry_join`` accumulate), then checked with Consul's texts.

Errors are :class:`ConfigError` (the agent prints the text and exits 1, as ``consul agent`` does);
warnings are collected in :attr:`AgentConfig.warnings` and printed before the agent starts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Consul's deployment-table warnings (agent/config/builder.go), verbatim.
DEPLOYMENT_TABLE = "https://www.consul.io/docs/internals/consensus.html#deployment-table"
WARN_EXPECT = "bootstrap_expect > 0: expecting {} servers"
WARN_EXPECT_TWO = (
    "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance. "
    f"See {DEPLOYMENT_TABLE}"
)
WARN_EXPECT_EVEN = (
    "bootstrap_expect is even number: A cluster with an even number of servers does not "
    f"achieve optimum fault tolerance. See {DEPLOYMENT_TABLE}"
)
WARN_EXPECT_ONE = "BootstrapExpect is set to 1; this is the same as Bootstrap mode."
WARN_BOOTSTRAP = "bootstrap = true: do not enable unless necessary"
ERR_EXCLUSIVE = "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"

_VALID_DATACENTER = re.compile(r"^[a-z0-9_-]+$")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR")


class ConfigError(Exception):
    """A flag or configuration value ``consul agent`` refuses; the text is Consul's."""


class FlagError(ConfigError):
    """A flag the command line cannot parse (Go's flag package): usage follows the text."""


class HelpRequested(Exception):
    """``-h`` / ``-help``."""


@dataclass
class AgentConfig:
    """What ``consim agent`` runs with (Consul's RuntimeConfig names, snake case)."""

    server: bool = False
    node_name: str = ""
    node_id: str = ""
    datacenter: str = "dc1"
    bind_addr: str = "0.0.0.0"
    advertise_addr: str = ""
    client_addr: str = "127.0.0.1"
    http_port: int = 8500
    server_port: int = 8300
    serf_lan_port: int = 8301
    serf_wan_port: int = 8302
    data_dir: str = ""
    bootstrap: bool = False
    bootstrap_expect: int = 0
    retry_join: list[str] = field(default_factory=list)
    retry_join_wan: list[str] = field(default_factory=list)
    start_join: list[str] = field(default_factory=list)
    start_join_wan: list[str] = field(default_factory=list)
    retry_interval: float = 30.0
    encrypt: str = ""
    raft_protocol: int = 3
    raft_multiplier: float = 5.0
    # performance.rpc_hold_timeout: how long a request waits out a leader election (Consul's 7s).
    rpc_hold_timeout: float = 7.0
    log_level: str = "INFO"
    pid_file: str = ""
    # Consul's server defaults: SIGTERM and SIGINT both shut down without leaving.
    leave_on_terminate: bool | None = None
    skip_leave_on_interrupt: bool | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def advertise(self) -> str:
        """The address the other servers reach this one on (RPC, serf LAN/WAN)."""
        return self.advertise_addr or self.bind_addr

    @property
    def leaves_on_terminate(self) -> bool:
        return bool(self.leave_on_terminate) if self.leave_on_terminate is not None else False

    @property
    def skips_leave_on_interrupt(self) -> bool:
        if self.skip_leave_on_interrupt is not None:
            return self.skip_leave_on_interrupt
        return self.server  # Consul: true on servers, false on clients


# ---- flags ----------------------------------------------------------------------------------

# flag -> (config key, kind, usage). kind: bool, int, str, list (repeatable), file, dir.
FLAGS: dict[str, tuple[str, str, str]] = {
    "advertise": ("advertise_addr", "str", "Sets the advertise address to use."),
    "bind": ("bind_addr", "str", "Sets the bind address for cluster communication."),
    "bootstrap": ("bootstrap", "bool", "Sets server to bootstrap mode."),
    "bootstrap-expect": (
        "bootstrap_expect",
        "int",
        "Sets server to expect bootstrap mode.",
    ),
    "client": (
        "client_addr",
        "str",
        "Sets the address to bind for client access. This includes RPC, DNS, HTTP, HTTPS and gRPC (if configured).",
    ),
    "config-dir": (
        "config_dir",
        "dir",
        "Path to a directory to read configuration files from. This will read every file ending in '.json' as configuration in this directory in alphabetical order. Can be specified multiple times.",
    ),
    "config-file": (
        "config_file",
        "file",
        "Path to a file in JSON or HCL format with a matching file extension. Can be specified multiple times.",
    ),
    "data-dir": ("data_dir", "str", "Path to a data directory to store agent state."),
    "datacenter": ("datacenter", "str", "Datacenter of the agent."),
    "encrypt": ("encrypt", "str", "Provides the gossip encryption key."),
    "http-port": ("http_port", "int", "Sets the HTTP API port to listen on."),
    "join": (
        "start_join",
        "list",
        "Address of an agent to join at start time. Can be specified multiple times.",
    ),
    "join-wan": (
        "start_join_wan",
        "list",
        "Address of an agent to join -wan at start time. Can be specified multiple times.",
    ),
    "log-level": ("log_level", "str", "Log level of the agent."),
    "node": ("node_name", "str", "Name of this node. Must be unique in the cluster."),
    "node-id": (
        "node_id",
        "str",
        "A unique ID for this node across space and time. Defaults to a randomly-generated ID that persists in the data-dir.",
    ),
    "pid-file": ("pid_file", "str", "Path to file to store agent PID."),
    "raft-protocol": (
        "raft_protocol",
        "int",
        "Sets the Raft protocol version. Defaults to latest.",
    ),
    "retry-interval": ("retry_interval", "str", "Time to wait between join attempts."),
    "retry-join": (
        "retry_join",
        "list",
        "Address of an agent to join at start time with retries enabled. Can be specified multiple times.",
    ),
    "retry-join-wan": (
        "retry_join_wan",
        "list",
        "Address of an agent to join -wan at start time with retries enabled. Can be specified multiple times.",
    ),
    "server": ("server", "bool", "Switches agent to server mode."),
}

# consul agent flags consim does not model: named as such instead of "not defined".
UNMODELLED_FLAGS = frozenset(
    {
        "alt-domain",
        "auto-reload-config",
        "config-format",
        "dev",
        "disable-host-node-id",
        "dns-port",
        "domain",
        "enable-local-script-checks",
        "enable-script-checks",
        "grpc-port",
        "grpc-tls-port",
        "hcl",
        "log-file",
        "log-json",
        "log-rotate-bytes",
        "log-rotate-duration",
        "log-rotate-max-files",
        "node-meta",
        "non-voting-server",
        "primary-gateway",
        "protocol",
        "read-replica",
        "recursor",
        "rejoin",
        "retry-interval-wan",
        "retry-max",
        "retry-max-wan",
        "segment",
        "serf-lan-bind",
        "serf-lan-port",
        "serf-wan-bind",
        "serf-wan-port",
        "server-port",
        "syslog",
        "ui",
        "ui-content-path",
        "ui-dir",
    }
)

_BOOL_TEXT = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}


def usage() -> str:
    """Go's ``PrintDefaults`` shape for the flags consim's agent takes."""
    lines = ["Usage:"]
    for name in sorted(FLAGS):
        _, kind, text = FLAGS[name]
        arg = {"int": " int", "bool": ""}.get(kind, " string")
        lines.append(f"  -{name}{arg}")
        lines.append(f"    \t{text}")
    return "\n".join(lines)


def parse_flags(argv: list[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Go's flag.Parse over ``argv``: ``-f``, ``--f``, ``-f=v``, ``-f v`` (not for bools); stops
    at the first non-flag or ``--``. Returns (values by config key, config files/dirs in the
    order given as ("file"|"dir", path), the remaining arguments)."""
    values: dict[str, Any] = {}
    sources: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            i += 1
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] == "-" or name[0] == "=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, has_value, value = name.partition("=")
        i += 1
        if name in ("h", "help"):
            raise HelpRequested()
        if name in UNMODELLED_FLAGS:
            raise ConfigError(f"-{name}: a consul agent flag consim does not model")
        if name not in FLAGS:
            raise FlagError(f"flag provided but not defined: -{name}")
        key, kind, _ = FLAGS[name]
        if kind == "bool":
            if not has_value:
                value = "true"
            if value not in _BOOL_TEXT:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[key] = _BOOL_TEXT[value]
            continue
        if not has_value:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if kind == "int":
            try:
                values[key] = int(value, 0)
            except ValueError:
                raise FlagError(f'invalid value "{value}" for flag -{name}: parse error') from None
        elif kind == "list":
            values.setdefault(key, []).append(value)
        elif kind in ("file", "dir"):
            sources.append((kind, value))
        else:
            values[key] = value
    return values, [f"{k}:{p}" for k, p in sources], argv[i:]


# ---- files ----------------------------------------------------------------------------------

# Config file keys consim's agent takes (Consul's names); nested tables flatten to these.
_FILE_KEYS = {
    "server": bool,
    "node_name": str,
    "node_id": str,
    "datacenter": str,
    "bind_addr": str,
    "advertise_addr": str,
    "client_addr": str,
    "data_dir": str,
    "bootstrap": bool,
    "bootstrap_expect": int,
    "retry_join": list,
    "retry_join_wan": list,
    "start_join": list,
    "start_join_wan": list,
    "retry_interval": str,
    "encrypt": str,
    "raft_protocol": int,
    "log_level": str,
    "pid_file": str,
    "leave_on_terminate": bool,
    "skip_leave_on_interrupt": bool,
    "ports.http": int,
    "ports.server": int,
    "ports.serf_lan": int,
    "ports.serf_wan": int,
    "performance.raft_multiplier": float,
    "performance.rpc_hold_timeout": str,
}
# Accepted and ignored: they change nothing a server-only simulation models.
_IGNORED_KEYS = {"ui", "ui_config", "ports.dns", "ports.grpc", "enable_syslog", "log_json"}


def _load_hcl(text: str) -> dict[str, Any]:
    import hcl2

    data = hcl2.loads(
        text, serialization_options=hcl2.SerializationOptions(strip_string_quotes=True)
    )
    return _unblock(data)


def _unblock(value: Any) -> Any:
    """python-hcl2 gives each block as a list of one dict (``ports { http = 1 }``): merge them."""
    if isinstance(value, dict):
        return {k: _unblock_value(v) for k, v in value.items() if not k.startswith("__")}
    return value


def _unblock_value(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        merged: dict[str, Any] = {}
        for v in value:
            merged.update(_unblock(v))
        return merged
    return _unblock(value)


def load_file(path: Path) -> dict[str, Any]:
    """One configuration file, flattened to ``ports.http`` style keys; ConfigError with Consul's
    texts for a file it cannot read or a key it does not know."""
    suffix = path.suffix
    if suffix not in (".json", ".hcl"):
        raise ConfigError(
            f"Error parsing {path}: config: file {path} has no '.json' or '.hcl' extension"
        )
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"Error reading {path}: {exc.strerror.lower() if exc.strerror else exc}"
        ) from None
    try:
        data = json.loads(text) if suffix == ".json" else _load_hcl(text)
    except Exception as exc:  # json and lark raise their own types; both mean the same here
        raise ConfigError(f"Error parsing {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Error parsing {path}: expected an object")
    flat: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and key in ("ports", "performance"):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in _IGNORED_KEYS:
            continue
        kind = _FILE_KEYS.get(key)
        if kind is None:
            errors.append(f"invalid config key {key}")
            continue
        if kind is list and isinstance(value, str):
            value = [value]
        if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # Consul takes an integer; consim also a fraction
        if kind is bool and isinstance(value, str) and value in _BOOL_TEXT:
            value = _BOOL_TEXT[value]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            errors.append(f"{key}: expected {kind.__name__}, got {value!r}")
            continue
        out[key] = value
    if errors:
        listed = "".join(f"\n\t* {e}" for e in errors)
        raise ConfigError(
            f"Error parsing {path}: {len(errors)} error{'s' if len(errors) > 1 else ''} occurred:{listed}\n"
        )
    return out


def _files_of(source: str) -> list[Path]:
    kind, _, name = source.partition(":")
    path = Path(name)
    if kind == "file":
        return [path]
    if not path.is_dir():
        raise ConfigError(f"Error reading {path}: not a directory")
    return sorted(p for p in path.iterdir() if p.suffix in (".json", ".hcl") and p.is_file())


# ---- building -------------------------------------------------------------------------------


def build(argv: list[str]) -> AgentConfig:
    """Flags and files to a checked AgentConfig (FlagError / ConfigError / HelpRequested)."""
    flags, sources, rest = parse_flags(argv)
    if rest:
        raise ConfigError(f"Unexpected extra arguments: {rest}")
    merged: dict[str, Any] = {}
    for source in sources:
        for path in _files_of(source):
            for key, value in load_file(path).items():
                if isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
    for key, value in flags.items():
        if isinstance(value, list):
            merged.setdefault(key, []).extend(value)
        else:
            merged[key] = value
    cfg = AgentConfig()
    renames = {
        "ports.http": "http_port",
        "ports.server": "server_port",
        "ports.serf_lan": "serf_lan_port",
        "ports.serf_wan": "serf_wan_port",
        "performance.raft_multiplier": "raft_multiplier",
        "performance.rpc_hold_timeout": "rpc_hold_timeout",
    }
    for key, value in merged.items():
        setattr(cfg, renames.get(key, key), value)
    if isinstance(cfg.retry_interval, str):
        cfg.retry_interval = _duration("retry_interval", cfg.retry_interval)
    if isinstance(cfg.rpc_hold_timeout, str):
        cfg.rpc_hold_timeout = _duration("performance.rpc_hold_timeout", cfg.rpc_hold_timeout)
    validate(cfg)
    return cfg


def _duration(key: str, text: str) -> float:
    from consim.golike import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(f'{key}: time: invalid duration "{text}"') from None


def validate(cfg: AgentConfig) -> None:
    """Consul's Builder.Validate for what consim models (texts verbatim), plus warnings."""
    import socket

    cfg.datacenter = cfg.datacenter.lower()
    if cfg.bootstrap_expect == 1:
        cfg.bootstrap, cfg.bootstrap_expect = True, 0
        cfg.warnings.append(WARN_EXPECT_ONE)
    if not cfg.datacenter:
        raise ConfigError("datacenter cannot be empty")
    if not _VALID_DATACENTER.match(cfg.datacenter):
        raise ConfigError(f'datacenter cannot be "{cfg.datacenter}". Please use only [a-z0-9-_].')
    if not cfg.data_dir:
        raise ConfigError("data_dir cannot be empty")
    if not cfg.node_name:
        cfg.node_name = socket.gethostname()
    if not cfg.server:
        raise ConfigError(
            "consim agent runs servers only: add -server (consim models no Consul client agents)"
        )
    if cfg.bootstrap_expect < 0:
        raise ConfigError(
            f"bootstrap_expect cannot be {cfg.bootstrap_expect}. Must be greater than or equal to zero"
        )
    if cfg.bootstrap_expect > 0 and cfg.bootstrap:
        raise ConfigError(ERR_EXCLUSIVE)
    if cfg.raft_protocol not in (2, 3):
        raise ConfigError(f"raft_protocol cannot be {cfg.raft_protocol}. Must be 2 or 3")
    if not 1 <= cfg.raft_multiplier <= 10:
        raise ConfigError(
            f"performance.raft_multiplier cannot be {cfg.raft_multiplier:g}. Must be between 1 and 10"
        )
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"Invalid log level: {cfg.log_level}. Valid log levels are: {list(LOG_LEVELS[:4]) + ['ERR']}"
        )
    for key in ("bind_addr", "advertise_addr", "client_addr"):
        text = getattr(cfg, key)
        if not text:
            continue
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ConfigError(
                f"{key}: {text!r} is not an IP address (consim does no DNS or go-sockaddr templates)"
            ) from None
        if key == "advertise_addr" and ip.is_unspecified:
            raise ConfigError("Advertise address cannot be 0.0.0.0, :: or [::]")
    for key, port in (
        ("ports.server", cfg.server_port),
        ("ports.serf_lan", cfg.serf_lan_port),
        ("ports.serf_wan", cfg.serf_wan_port),
    ):
        default = {"ports.server": 8300, "ports.serf_lan": 8301, "ports.serf_wan": 8302}[key]
        if port != default:
            raise ConfigError(
                f"{key} = {port}: consim serves the server RPC and serf ports only on Consul's "
                f"defaults (8300, 8301, 8302); give each server its own address with -bind instead"
            )
    if not 0 < cfg.http_port < 65536:
        raise ConfigError(f"ports.http cannot be {cfg.http_port}")
    if cfg.node_id:
        try:
            uuid.UUID(cfg.node_id)
        except ValueError:
            raise ConfigError(f"node_id cannot be {cfg.node_id!r}: it must be a UUID") from None
        cfg.node_id = cfg.node_id.lower()
    if cfg.encrypt:
        from consim.gossip import KeyringError, decode_key

        try:
            decode_key(cfg.encrypt)
        except KeyringError as exc:
            raise ConfigError(f"encrypt has invalid key: {exc}") from None
    # warnings, in Consul's order
    if not cfg.bootstrap and cfg.bootstrap_expect > 1:
        cfg.warnings.append(WARN_EXPECT.format(cfg.bootstrap_expect))
    if not cfg.bootstrap and cfg.bootstrap_expect == 2:
        cfg.warnings.append(WARN_EXPECT_TWO)
    if not cfg.bootstrap and cfg.bootstrap_expect > 2 and cfg.bootstrap_expect % 2 == 0:
        cfg.warnings.append(WARN_EXPECT_EVEN)
    if cfg.bootstrap and cfg.bootstrap_expect == 0:
        cfg.warnings.append(WARN_BOOTSTRAP)
