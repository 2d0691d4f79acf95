"""The ``consim`` command line: parse arguments, call one function, print. No protocol logic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from consim.spec import ClusterSpec


def _datacenters(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for part in text.split(","):
        name, _, count = part.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"expected dc1=3,dc2=3, got {text!r}")
        out.append((name.strip(), int(count)))
    return tuple(out)


def _encrypt_key(text: str) -> str:
    """``consul agent -encrypt``: base64 of a 16, 24 or 32 byte key, checked with Go's rules."""
    from consim.gossip import KeyringError, decode_key

    try:
        decode_key(text)
    except KeyringError as exc:
        raise argparse.ArgumentTypeError(f"encrypt has invalid key: {exc}") from None
    return text


class UsageError(Exception):
    """A bad option value found after parsing; printed without a traceback, exit 2."""


def _cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    from consim.acl import ACLConfig, ACLConfigError
    from consim.bench.cli import network_from_args

    datacenters = args.datacenters or (("dc1", args.servers),)
    try:
        acl = ACLConfig.load(Path(args.acl_file)) if args.acl_file else ACLConfig()
    except (ACLConfigError, OSError) as exc:
        raise UsageError(f"--acl-file: {exc}") from None
    from consim.tls.cli import tls_from_args
    from consim.tls.config import TLSConfigError

    try:
        tls = tls_from_args(args, [dc for dc, _ in datacenters])
    except TLSConfigError as exc:
        raise UsageError(str(exc)) from None
    return ClusterSpec(
        datacenters=datacenters,
        seed=args.seed,
        raft_multiplier=args.raft_multiplier,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        http_port=args.http_port,
        host_block=args.host_block,
        acl=acl,
        tls=tls,
        encrypt=args.encrypt,
        http_max_conns_per_client=getattr(args, "http_max_conns_per_client", 200),
        snapshot_threshold=getattr(args, "raft_snapshot_threshold", None),
        snapshot_interval=getattr(args, "raft_snapshot_interval", None),
        trailing_logs=getattr(args, "raft_trailing_logs", None),
        network=network_from_args(args) if hasattr(args, "lan_latency") else None,
        raft_peers=_raft_peers(getattr(args, "raft_peers", None)),
        pre_vote=not getattr(args, "no_pre_vote", False),
    )


def _snapshot_interval(text: str) -> float:
    from consim.golike import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a duration like "30s", got {text!r}') from None
    from consim.raft.config import snapshot_interval_error

    error = snapshot_interval_error(seconds)
    if error is not None:
        raise argparse.ArgumentTypeError(f"{error}, got {text!r}")
    return seconds


def _raft_peers(path: str | None) -> Any:
    if path is None:
        return None
    from consim.server.startup import RecoveryError, load_raft_peers

    try:
        return load_raft_peers(Path(path))
    except (RecoveryError, OSError) as exc:
        raise UsageError(f"--raft-peers: {exc}") from None


def cmd_up(args: argparse.Namespace) -> int:
    import signal

    import trio

    from consim.live import serve_cluster

    spec = _cluster_spec(args)
    if args.processes:
        unsupported = [
            flag
            for flag, given in (
                ("--acl-file", args.acl_file),
                ("--raft-snapshot-threshold", args.raft_snapshot_threshold is not None),
                ("--raft-snapshot-interval", args.raft_snapshot_interval is not None),
                ("--raft-trailing-logs", args.raft_trailing_logs is not None),
                *(
                    (flag, getattr(args, flag[2:].replace("-", "_"), None) is not None)
                    for flag in ("--lan-latency", "--lan-jitter", "--wan-latency", "--wan-jitter")
                    + ("--loss",)
                ),
            )
            if given
        ]
        if unsupported:
            raise UsageError(f"{', '.join(unsupported)}: not available with --processes yet")
    if args.max_events < 1:
        print(f"error: --max-events must be at least 1, got {args.max_events}", file=sys.stderr)
        return 2

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        print("==> Caught signal, shutting down", flush=True)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                if args.processes:
                    from consim.agent.processes import serve_processes

                    await serve_processes(spec, log_level=args.log_level)
                else:
                    await serve_cluster(spec, log_level=args.log_level, max_events=args.max_events)

    from consim.live import AddressInUse, address_in_use

    try:
        trio.run(main)
    except* AddressInUse as group:
        raise UsageError(str(group.exceptions[0])) from None
    except* OSError as group:
        in_use = address_in_use(group)
        if in_use is None:
            raise
        raise UsageError(
            f"{in_use}; put this cluster on other addresses with --host-block N"
        ) from None
    print("==> consim up stopped", flush=True)
    return 0


NODE_ACTIONS = ("kill", "restart", "stop", "pause", "resume", "isolate")
CTL_ACTIONS = ("status", *NODE_ACTIONS, "partition", "block", "heal", "delay", "loss")
TARGET_HELP = "a node name or a role: leader, follower, any, old-leader, last-killed (ROLE@dc2)"


def ctl_body(action: str, params: list[str]) -> dict[str, Any]:
    """The control API body for ``consim ctl ACTION PARAMS...``; ``UsageError`` for bad input.

    Values are checked here, so a typo gets a usage line instead of a round trip; names and roles
    are resolved by the running cluster (it knows who leads)."""
    from consim.scenario.model import parse_duration

    def usage(shape: str, why: str = "") -> UsageError:
        return UsageError(f"{why + '; ' if why else ''}usage: consim ctl {action} {shape}")

    if action in ("status", "heal"):
        if params:
            raise usage("", f"{action} takes no arguments")
        return {}
    if action in NODE_ACTIONS:
        if len(params) != 1:
            raise usage(f"NODE  (NODE: {TARGET_HELP})")
        return {"node": params[0]}
    if action == "partition":
        if len(params) < 2:
            raise usage("NODE,NODE NODE,...  (at least two groups; a group may be 'others')")
        return {"groups": [[n for n in p.split(",") if n] for p in params]}
    if action == "block":
        if len(params) != 2:
            raise usage("SRC DST  (drop SRC's traffic to DST, one way; DST still reaches SRC)")
        return {"src": params[0], "dst": params[1]}
    if action in ("delay", "loss"):
        what = "DURATION" if action == "delay" else "PROBABILITY"
        shape = f"SRC DST {what}  (SRC/DST: {TARGET_HELP}, a datacenter, or *)"
        if len(params) != 3:
            raise usage(shape)
        src, dst, text = params
        if action == "delay":
            try:
                value = parse_duration(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    raise usage(
                        shape, f'delay must be a duration like "200ms" or "1.5s", got {text!r}'
                    ) from None
            if not value >= 0 or value == float("inf"):
                raise usage(shape, f"delay must be a duration >= 0, got {text!r}")
            return {"src": src, "dst": dst, "seconds": value}
        try:
            p = float(text)
        except ValueError:
            p = float("nan")
        if not 0.0 <= p <= 1.0:
            raise usage(shape, f"loss must be a probability from 0 to 1, got {text!r}")
        return {"src": src, "dst": dst, "probability": p}
    raise usage("", f"unknown action {action!r}")


def cmd_ctl(args: argparse.Namespace) -> int:
    import httpx
    import trio

    from consim.http.client import request
    from consim.live import ControlNotFound, find_control

    body = ctl_body(args.action, args.params)
    control = args.control or os.environ.get("CONSIM_CONTROL")
    if not control:
        try:
            control = find_control()
        except ControlNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    action = args.action
    if action == "status":
        method, path, headers, payload = "GET", "/ctl/status", None, b""
    else:
        json_type = {"Content-Type": "application/json"}
        method, path, headers, payload = (
            "POST",
            f"/ctl/{action}",
            json_type,
            json.dumps(body).encode(),
        )
    try:
        code, _headers, answer = trio.run(
            partial(request, control, method, path, headers=headers, body=payload, timeout=60)
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach consim up control API at {control}: {exc}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"error: {answer.decode('utf-8', 'replace')}", file=sys.stderr)
        return 1
    status = json.loads(answer)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(format_status(status))
    return 0


def format_status(status: list[dict[str, Any]]) -> str:
    # `consim up --processes`: each server is a process; its pid is what kill -STOP etc. need.
    processes = any("pid" in s for s in status)
    rows = [
        ("Node", "Datacenter", "Address", "State", "Term", "Commit Index", "Last Contact", "Errors")
        + (("Pid",) if processes else ())
    ]
    for s in status:
        contact = s.get("last_contact")
        if s.get("state") == "leader":
            contact_text = "0"
        elif contact is None:
            contact_text = "never" if s.get("state") != "down" else "-"
        else:
            contact_text = f"{contact * 1000:.1f}ms"
        state = s.get("state", "down") + (" (paused)" if s.get("paused") else "")
        if s.get("failed"):
            state += " (failed)"  # stopped by an internal error: see the log's server_failed
        rows.append(
            (
                s["name"],
                s["datacenter"],
                s["address"],
                state,
                str(s.get("term", "-")),
                str(s.get("commit_index", "-")),
                contact_text,
                str(s.get("internal_errors", 0)),  # contained internal errors (ERROR lines)
            )
            + ((str(s.get("pid") or "-"),) if processes else ())
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from consim.demo import leader_loss_demo

    return leader_loss_demo(seed=args.seed, log_level=args.log_level)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consim", description="A simulation of Consul servers.")
    sub = parser.add_subparsers(dest="command", required=True)

    def cluster_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--servers", type=int, default=3, help="servers in dc1 (default 3)")
        p.add_argument(
            "--datacenters", type=_datacenters, help="dc1=3,dc2=3 (instead of --servers)"
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--raft-multiplier",
            type=float,
            default=5.0,
            help="Consul's raft_multiplier (default 5)",
        )
        p.add_argument("--data-dir", help="persist each server under DIR/<node> (default: memory)")
        p.add_argument("--http-port", type=int, default=8500)
        p.add_argument(
            "--host-block",
            type=int,
            default=0,
            help="put datacenter d's servers on 127.0.<N+d>.k instead of 127.0.d.k (default 0)",
        )
        p.add_argument("--acl-file", help="ACL configuration, JSON or TOML (see README)")
        p.add_argument(
            "--encrypt",
            type=_encrypt_key,
            help="gossip encryption key, base64 (like consul agent -encrypt); default: off",
        )
        p.add_argument(
            "--log-level", default="INFO", choices=["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
        )

    up = sub.add_parser("up", help="run a live cluster on loopback until Ctrl-C")
    cluster_options(up)
    up.add_argument(
        "--max-events",
        type=int,
        default=10_000,
        help="events kept in memory (a ring; every event is still printed); default 10000",
    )
    up.add_argument(
        "--http-max-conns-per-client",
        type=int,
        default=200,
        help="Consul's limits.http_max_conns_per_client: HTTP connections per client IP "
        "(default 200, 0 = no limit)",
    )
    up.add_argument(
        "--raft-snapshot-threshold",
        type=int,
        help="Consul's raft_snapshot_threshold: log entries between snapshots (default 8192)",
    )
    up.add_argument(
        "--raft-snapshot-interval",
        type=_snapshot_interval,
        metavar="DURATION",
        help="Consul's raft_snapshot_interval: how often each server checks the threshold, "
        "randomized up to twice that (default 30s; 0s: after every apply, consim only)",
    )
    up.add_argument(
        "--raft-trailing-logs",
        type=int,
        help="Consul's raft_trailing_logs: entries kept after a snapshot (default 10240)",
    )
    from consim.bench.cli import add_network_options

    add_network_options(up)
    up.add_argument(
        "--processes",
        action="store_true",
        help="one 'consim agent' process per server (kill = SIGKILL, pause = SIGSTOP)",
    )
    up.add_argument(
        "--raft-peers",
        metavar="FILE",
        help="form the cluster from this Raft configuration (Consul's peers.json, protocol 3: "
        "id, address, non_voter); it may name other Raft nodes (see README)",
    )
    up.add_argument(
        "--no-pre-vote",
        action="store_true",
        help="elections without pre-vote, as hashicorp/raft 1.1.2 nodes need",
    )
    from consim.tls.cli import add_tls_options, register_tls_command

    add_tls_options(up)
    up.set_defaults(func=cmd_up)

    ctl = sub.add_parser("ctl", help="act on a running 'consim up'")
    ctl.add_argument("action", choices=CTL_ACTIONS)
    ctl.add_argument(
        "params",
        nargs="*",
        help=f"NODE for kill/restart/stop/pause/resume/isolate ({TARGET_HELP}); "
        "partition G1 G2...; block SRC DST; delay SRC DST 200ms; loss SRC DST 0.1",
    )
    ctl.add_argument("--json", action="store_true")
    ctl.add_argument(
        "--control", help="host:port of the control API (default: found automatically)"
    )
    ctl.set_defaults(func=cmd_ctl)

    demo = sub.add_parser("demo", help="leader loss in virtual time, as Consul log lines")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--log-level", default="INFO", choices=["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
    )
    demo.set_defaults(func=cmd_demo)

    from consim.agent.cli import register_agent_command
    from consim.bench.cli import register_bench_command
    from consim.check.cli import register_check_command
    from consim.consulcli import register_consul_commands
    from consim.scenario.cli import register_scenario_commands
    from consim.ui.cli import register_ui_commands

    register_scenario_commands(sub)
    register_check_command(sub)
    register_consul_commands(sub)
    register_ui_commands(sub)
    register_bench_command(sub)
    register_agent_command(sub)
    register_tls_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"consim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `consim run ... | head`: the reader left. Say nothing more; point stdout at devnull so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell shows for a tool cut off by a pipe


if __name__ == "__main__":
    sys.exit(main())
