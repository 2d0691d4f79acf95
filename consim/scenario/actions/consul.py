"""``consul = "operator raft list-peers"``: a consul CLI command against one server's HTTP API."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from consim.scenario.actions.base import Action
from consim.scenario.base import SCENARIO_NODE, ActionArgs, Checker, Step, StepFailed, Target

CONSUL_COMMANDS = (
    ("operator", "raft", "list-peers"),
    ("operator", "raft", "remove-peer"),
    ("operator", "raft", "transfer-leader"),
    ("kv", "get"),
    ("kv", "put"),
    ("keyring",),
    ("members",),
    ("force-leave",),
)

if TYPE_CHECKING:
    from consim.scenario.context import StepContext


@dataclass(frozen=True, eq=False)
class ConsulExpect:
    """What the command must do; None / empty is not checked."""

    exit: int | None = None
    stdout: str | None = None  # the whole of it (trailing newlines aside)
    stdout_contains: list[str] = field(default_factory=list)
    stdout_lacks: list[str] = field(default_factory=list)
    stderr_contains: list[str] = field(default_factory=list)

    def filled(self, ctx: StepContext, step: Step) -> ConsulExpect:
        return replace(
            self, **{f.name: ctx.fill(getattr(self, f.name), step) for f in fields(self)}
        )


@dataclass(frozen=True, eq=False)
class ConsulArgs(ActionArgs):
    argv: list[str]
    on: Target
    expect: ConsulExpect = field(default_factory=ConsulExpect)

    def describe(self) -> str:
        return f"consul {' '.join(self.argv)} on {self.on}"


class Consul(Action[ConsulArgs]):
    name = "consul"
    keys = frozenset({"on", "expect"})

    def parse(self, c: Checker, value: Any, step: dict[str, Any], dc: str | None) -> ConsulArgs:
        text = c.string("consul", value)
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise c.expected("consul", f"a command line ({exc})", value) from None
        if argv and argv[0] == "consul":
            argv = argv[1:]
        if not any(tuple(argv[: len(cmd)]) == cmd for cmd in CONSUL_COMMANDS):
            known = ", ".join(f'"{" ".join(cmd)}"' for cmd in CONSUL_COMMANDS)
            raise c.expected("consul", f"one of {known} with its flags", value)
        if any(a.startswith(("-http-addr", "--http-addr")) for a in argv):
            raise c.fail("consul", "-http-addr is chosen by 'on' inside a scenario")
        c.placeholders("consul", argv)
        expect = step.get("expect", {})
        if not isinstance(expect, dict):
            raise c.expected("expect", "a table like { exit = 0 }", expect)
        out: dict[str, Any] = {}
        for k, v in expect.items():
            if k == "exit":
                out[k] = c.integer("expect.exit", v, 0)
            elif k == "stdout":
                out[k] = c.string("expect.stdout", v)
            elif k in ("stdout_contains", "stdout_lacks", "stderr_contains"):
                if isinstance(v, str):
                    v = [v]
                if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                    raise c.expected(f"expect.{k}", "a string or a list of strings", v)
                out[k] = v
            else:
                raise c.fail(
                    f"expect.{k}",
                    "unknown expectation (expected exit, stdout, stdout_contains, stdout_lacks, "
                    "stderr_contains)",
                )
        c.placeholders("expect", out)
        return ConsulArgs(argv, c.target("on", step.get("on", "any"), dc), ConsulExpect(**out))

    async def run(self, ctx: StepContext, step: Step, args: ConsulArgs) -> str:
        # Imported when a command runs, so validating a file does not load the CLI.
        from consim.consulcli import TransportError, run_command

        argv: list[str] = ctx.fill(args.argv, step)
        e = args.expect.filled(ctx, step)
        name = ctx.resolve(args.on, step)

        async def transport(
            method: str, path: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]:
            status, out_headers, out_body, error = await ctx.request(
                name, method, path, headers, body, kind="consul_http"
            )
            if status is None:
                address = ctx.cluster.node(name).spec.http_address
                verb = method[0] + method[1:].lower()
                url = f'{verb} "http://{address}{path}"'
                if "connection refused" in error or "ConnectError" in error:
                    raise TransportError(f"{url}: dial tcp {address}: connect: connection refused")
                raise TransportError(f"{url}: {error}")
            return status, out_headers, out_body

        out = await run_command(list(argv), transport, env={})
        ctx.events.emit(
            SCENARIO_NODE,
            "consul_command",
            {
                "server": name,
                "command": "consul " + " ".join(argv),
                "exit": out.exit_code,
                "stdout": out.stdout,
                "stderr": out.stderr,
                "step": step.number,
            },
            message="consul " + " ".join(argv),
        )
        problems = []
        if e.exit is not None and out.exit_code != e.exit:
            problems.append(f"exit code {out.exit_code}, expected {e.exit}")
        if e.stdout is not None and out.stdout.rstrip("\n") != e.stdout.rstrip("\n"):
            problems.append(f"stdout differs, expected {e.stdout!r}")
        for piece in e.stdout_contains:
            if piece not in out.stdout:
                problems.append(f"stdout lacks {piece!r}")
        for piece in e.stdout_lacks:
            if piece in out.stdout:
                problems.append(f"stdout contains {piece!r}")
        for piece in e.stderr_contains:
            if piece not in out.stderr:
                problems.append(f"stderr lacks {piece!r}")
        output = (out.stdout + out.stderr).rstrip("\n")
        if problems:
            raise StepFailed("; ".join(problems) + f"\n{_indent(output)}")
        return f"exit {out.exit_code} on {name}\n{_indent(output)}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


ACTIONS = (Consul(),)
