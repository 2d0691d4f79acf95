"""``consim bench forwarding``: what leader forwarding costs, in virtual time (the network model's
latencies alone) or live (``--live``: consim's real HTTP and RPC path on loopback)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from consim.bench.targets import CONSISTENCY, DEFAULT_ENDPOINT, TARGETS, format_table, write_plots
from consim.bench.targets import write_json as write_bench_json
from consim.spec import NetworkModel

VIRTUAL_LAN, VIRTUAL_WAN = 0.001, 0.020  # the virtual default model (one-way)


def _duration(text: str) -> float:
    """A Go duration ("2ms", "1.5s") or a plain number of seconds."""
    from consim.golike import GoError, parse_duration

    try:
        seconds = parse_duration(text)
    except GoError as exc:
        try:
            seconds = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a duration >= 0, got {text!r}")
    return seconds


def _targets(text: str) -> tuple[str, ...]:
    from consim.bench.live import LIVE_TARGETS

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in names if t not in LIVE_TARGETS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target {', '.join(bad) or '(none)'}; expected some of {', '.join(LIVE_TARGETS)}"
        )
    return names


def add_network_options(p: argparse.ArgumentParser, defaults: str = "") -> None:
    """The network model's flags (``consim bench``, ``consim up``); one-way delays."""
    p.add_argument("--lan-latency", type=_duration, help=f"one-way within a datacenter{defaults}")
    p.add_argument("--lan-jitter", type=_duration, help="up to this much more per message")
    p.add_argument("--wan-latency", type=_duration, help="one-way between datacenters")
    p.add_argument("--wan-jitter", type=_duration)
    p.add_argument("--loss", type=float, help="loss probability on every link (TCP retransmits)")


def network_from_args(args: argparse.Namespace) -> NetworkModel | None:
    """The model the flags describe; None when no flag is given (no model: as before)."""
    return _model(args, live=True)


def _model(args: argparse.Namespace, live: bool) -> NetworkModel | None:
    given = [args.lan_latency, args.lan_jitter, args.wan_latency, args.wan_jitter, args.loss]
    if live and all(v is None for v in given):
        return None  # live with no flag: loopback as it is
    try:
        return NetworkModel(
            lan_latency=args.lan_latency
            if args.lan_latency is not None
            else (0.0 if live else VIRTUAL_LAN),
            lan_jitter=args.lan_jitter or 0.0,
            wan_latency=args.wan_latency
            if args.wan_latency is not None
            else (0.0 if live else VIRTUAL_WAN),
            wan_jitter=args.wan_jitter or 0.0,
            loss=args.loss or 0.0,
        )
    except ValueError as exc:
        raise SystemExit(f"consim bench: error: {exc}") from None


def cmd_bench_forwarding(args: argparse.Namespace) -> int:
    live = args.live
    progress = (lambda line: print(line, flush=True)) if sys.stdout.isatty() else None
    if args.rate is not None and args.connections is not None and not live:
        # Live, --rate is spread over --connections clients; virtual time has no clients to
        # spread it over (open loop: one request per 1/rate).
        print("consim bench: error: give --rate or --connections, not both", file=sys.stderr)
        return 2
    model = _model(args, live)
    duration = args.duration if args.duration is not None else (3.0 if live else 2.0)
    runs = args.runs if args.runs is not None else (3 if live else 1)
    if live:
        from consim.bench.live import LIVE_TARGETS, run_live_bench

        try:
            result = run_live_bench(
                targets=args.targets or LIVE_TARGETS,
                endpoint=args.endpoint,
                consistency=args.consistency,
                connections=args.connections if args.rate is None else (args.connections or 16),
                rate=args.rate,
                duration=duration,
                runs=runs,
                model=model,
                http_port=args.http_port,
                host_block=args.host_block,
                seed=args.seed,
                tool=args.load_generator,
                progress=progress,
            )
        except (RuntimeError, ValueError) as exc:
            print(f"consim bench: error: {exc}", file=sys.stderr)
            return 1
    else:
        from consim.bench.virtual import CLUSTER_TARGETS, run_virtual_bench

        targets = args.targets or CLUSTER_TARGETS
        assert model is not None
        try:
            result = run_virtual_bench(
                model=model,
                targets=targets,
                endpoint=args.endpoint,
                consistency=args.consistency,
                rate=(args.rate or 200.0) if args.connections is None else None,
                connections=args.connections,
                duration=duration,
                runs=runs,
                seed=args.seed,
                progress=progress,
            )
        except ValueError as exc:
            print(f"consim bench: error: {exc}", file=sys.stderr)
            return 2
    settings = ", ".join(f"{k} {v}" for k, v in result.settings.items() if v is not None)
    print(f"{result.endpoint} ({result.mode}, consistency {result.consistency}): {settings}")
    print(format_table(result))
    if args.json:
        write_bench_json(result, Path(args.json))
        print(f"json: {args.json}")
    if args.plots:
        for path in write_plots(result, Path(args.plots)):
            print(f"plot: {path}")
    return 0


def register_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="measure request paths (forwarding) and print figures")
    kinds = bench.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser(
        "forwarding",
        help="direct, forwarded, stale, ?dc and the framework floor",
        description="Latency and throughput of a read on the leader (direct), on a follower "
        "(forwarded), on a follower with ?stale, on the leader with ?dc=dc2, and (--live) of a bare "
        f"quart-trio app (floor). Targets: {', '.join(TARGETS)}.",
    )
    p.add_argument("--live", action="store_true", help="real sockets and the real clock")
    p.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help=f"GET path (default {DEFAULT_ENDPOINT})"
    )
    p.add_argument("--consistency", choices=CONSISTENCY, default="default")
    p.add_argument("--connections", type=int, help="closed loop: N clients (live default 16)")
    p.add_argument(
        "--rate",
        type=float,
        help="open loop: requests/s (virtual default 200; live: spread over --connections)",
    )
    p.add_argument("--duration", type=_duration, help="per target per run (virtual 2s, live 3s)")
    p.add_argument("--runs", type=int, help="interleaved repetitions (virtual 1, live 3)")
    p.add_argument("--targets", type=_targets, help="comma-separated (default: all of the mode's)")
    add_network_options(p, " (virtual default 1ms; WAN 20ms)")
    p.add_argument("--json", metavar="FILE", help="write per-target figures as JSON")
    p.add_argument(
        "--plots", metavar="DIR", help="write forwarding-cdf.svg and forwarding-over-time.svg"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--http-port", type=int, default=18700, help="live: every server's HTTP port")
    p.add_argument("--host-block", type=int, help="live: 127.0.N.x for dc1 (default: a free one)")
    p.add_argument("--load-generator", choices=("auto", "wrk", "builtin"), default="auto")
    p.set_defaults(func=cmd_bench_forwarding)
