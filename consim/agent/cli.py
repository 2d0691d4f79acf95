"""Registers ``consim agent``; its flags are Consul's (Go's flag rules), parsed by
``consim.agent.config``, not argparse."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_agent(args: argparse.Namespace) -> int:
    from consim.agent.run import run_agent

    return run_agent(list(args.agent_args))


def register_agent_command(sub: Any) -> None:
    agent = sub.add_parser(
        "agent",
        help="run one Consul server in this process (consul agent's flags: -server -node ...)",
        add_help=False,
        prefix_chars="\0",  # every argument goes to consim.agent.config untouched
    )
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=cmd_agent)
