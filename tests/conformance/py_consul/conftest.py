"""py-consul 1.8.0's own tests (vendored from its sdist, MIT) against a live consim server.

Upstream starts a Docker ``consul agent -dev`` per test (its root ``conftest.py``); here each test
gets a fresh one-server consim cluster instead, live on real sockets (py-consul speaks HTTP), run
by ``trio.run`` in a thread of its own and torn down after the test. The fixtures keep upstream's
names and shapes (``consul_port`` -> (port, version), ``acl_consul_instance`` -> (instance,
management token)), and ``consul_obj`` / ``acl_consul`` are upstream's ``tests/conftest.py``.

The tests build clients as ``Consul(port=P)``, which means ``127.0.0.1``. Upstream's HTTP checks
probe the dev agent itself at ``http://localhost:8500``, so the server takes 127.0.0.1:8500 (and
Consul's 8300-8302) when they are free; when another live cluster on this machine holds them it
goes to the first free ``127.0.N.1`` instead, a client built without a host is pointed there (the
one thing Docker's port mapping gave upstream), and the two tests whose checks probe 8500 are
expected to fail for that run.

Every upstream file runs (about 37 s): ``api/`` on the synchronous client and ``test_aio.py`` on
the asyncio one, each of its tests on an event loop of its own (see below). The tests that fail
against consim on purpose are strict xfails in ``EXPECTED_FAILURES``, with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import inspect
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import consul
import consul.base
import pytest
import requests
import trio

from consim.acl import ACLConfig
from consim.runtime import start_live_cluster_parts
from consim.server.state.acl import ACLTable
from consim.spec import ClusterSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ for live_hosts
from live_hosts import free_host_base  # noqa: E402

# A dev agent's HTTP address: upstream's HTTP checks probe http://localhost:8500 itself.
DEV_HTTP_PORT = 8500
HTTP_PORT = 18651  # where the server goes when 127.0.0.1:8500 (or 8300/8301/8302) is taken
START_TIMEOUT = 20.0

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])
ACLConsul = collections.namedtuple("ACLConsul", ["instance", "token", "version"])

_ADDRESS: tuple[int, int] | None = None


def _address() -> tuple[int, int]:
    """(host_block, http_port): the dev agent's 127.0.0.1:8500 when free, else a free block."""
    global _ADDRESS
    if _ADDRESS is None:
        try:
            _ADDRESS = (free_host_base([1], DEV_HTTP_PORT, bases=(0,)), DEV_HTTP_PORT)
        except RuntimeError:
            _ADDRESS = (free_host_base([1], HTTP_PORT, bases=(0, *range(220, 250, 3))), HTTP_PORT)
    return _ADDRESS


def _host_block() -> int:
    return _address()[0]


class LiveServer:
    """One single-server consim cluster (a dev agent's stand-in) in a thread of its own."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.host = spec.servers()[0].host
        self.port = spec.http_port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        cluster, _events = start_live_cluster_parts(self.spec, max_events=2000)
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(cluster.net.run)
                await nursery.start(cluster.run)
                leader = await cluster.wait_for_leader(within=START_TIMEOUT)
                with trio.fail_after(START_TIMEOUT):
                    # ...and, with ACLs, until the leader stored its builtin tokens (as the
                    # dev agent has before upstream's readiness check passes).
                    while not leader.consistent_ready or (
                        self.spec.acl.enabled and not leader.fsm.table(ACLTable).initialized
                    ):
                        await trio.sleep(0.005)
                self._ready.set()
                await trio.sleep_forever()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT + 5) or self._error is not None:
            raise RuntimeError(f"consim did not start: {self._error!r}")
        # The HTTP listener starts beside the server: wait until it answers.
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{self.host}:{self.port}/v1/status/leader", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise RuntimeError("consim's HTTP API did not answer")

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            scope = self._scope
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
        self._thread.join(10)


def _spec(acl_token: str | None) -> ClusterSpec:
    acl = ACLConfig()
    if acl_token is not None:
        # Upstream's ACL agent: acl.enabled with tokens.initial_management, default policy allow.
        acl = ACLConfig.from_dict({"enabled": True, "initial_management": acl_token})
    return ClusterSpec(
        datacenters=(("dc1", 1),),
        seed=1,
        raft_multiplier=0.1,  # a dev agent elects itself at once; 1 costs ~1 s a test
        http_port=_address()[1],
        host_block=_host_block(),
        acl=acl,
    )


@pytest.fixture(autouse=True)
def _default_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Consul(port=P)`` (no host) reaches the test's server, as Docker's 127.0.0.1 mapping."""
    host = f"127.0.{_host_block()}.1"
    original = consul.base.Consul.__init__

    def init(self: Any, host_: str | None = None, *args: Any, **kw: Any) -> None:
        if "host" in kw:
            host_ = kw.pop("host")
        original(self, host if host_ is None else host_, *args, **kw)

    monkeypatch.setattr(consul.base.Consul, "__init__", init)
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)


def _instance(request: pytest.FixtureRequest, acl_token: str | None):
    server = LiveServer(_spec(acl_token))
    server.start()
    try:
        version = requests.get(
            f"http://{server.host}:{server.port}/v1/agent/self",
            headers={"X-Consul-Token": acl_token or ""},
            timeout=10,
        ).json()["Config"]["Version"]
        instance = ConsulInstance(None, server.port, version.strip())
        yield instance if acl_token is None else (instance, acl_token)
    finally:
        server.stop()


@pytest.fixture
def consul_instance(request: pytest.FixtureRequest):
    yield from _instance(request, None)


@pytest.fixture
def acl_consul_instance(request: pytest.FixtureRequest):
    yield from _instance(request, uuid.uuid4().hex)


@pytest.fixture
def consul_port(consul_instance: ConsulInstance) -> tuple[int, str]:
    return consul_instance.port, consul_instance.version


# ---- upstream's tests/conftest.py


@pytest.fixture
def acl_consul(acl_consul_instance):
    instance, token = acl_consul_instance
    return ACLConsul(consul.Consul(port=instance.port), token, instance.version)


@pytest.fixture
def consul_obj(consul_port):
    consul_port, consul_version = consul_port
    c = consul.Consul(port=consul_port)
    return c, consul_version


# ---- test_aio.py: py-consul's asyncio client

# Upstream runs test_aio.py with pytest-asyncio; this suite runs pytest-trio in trio_mode,
# which would claim its coroutines and async fixtures for trio. Its items get an asyncio event
# loop of their own instead: the file's async fixtures and the test run on that loop (the
# consim server stays in its own thread, under trio, as for every other test).
AIO_FILE = "test_aio.py"
_AIO_LOOP = pytest.StashKey[asyncio.AbstractEventLoop]()


def _is_aio(node: pytest.Item | pytest.Collector) -> bool:
    return isinstance(node, pytest.Function) and Path(str(node.path)).name == AIO_FILE


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_aio(item):
            # undo pytest-trio's automark (trio_mode): these coroutines are asyncio's
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]
    _mark_expected_failures(items)


def _loop(item: pytest.Item) -> asyncio.AbstractEventLoop:
    if _AIO_LOOP not in item.stash:
        item.stash[_AIO_LOOP] = asyncio.new_event_loop()
    return item.stash[_AIO_LOOP]


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Any:
    func = fixturedef.func
    if not _is_aio(request.node) or not inspect.isasyncgenfunction(func):
        return None
    loop = _loop(request.node)
    kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    agen = func(**kwargs)
    value = loop.run_until_complete(agen.__anext__())

    def finish() -> None:
        with contextlib.suppress(StopAsyncIteration):
            loop.run_until_complete(agen.__anext__())

    fixturedef.addfinalizer(finish)
    fixturedef.cached_result = (value, request.param_index, None)
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_aio(pyfuncitem) or not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    _loop(pyfuncitem).run_until_complete(pyfuncitem.obj(**kwargs))
    return True


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    loop = item.stash.get(_AIO_LOOP, None)
    if loop is not None:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# Tests that fail against consim on purpose, each with the reason (README.md lists them too).
# strict: one that starts passing fails the suite, so this list stays true.
EXPECTED_FAILURES = {
    "api/test_agent.py::TestAgent::test_agent_self": (
        "expects an xDS section in /v1/agent/self: Consul sends it only when it runs a "
        "gRPC/xDS server, and consim serves none"
    ),
    "api/test_operator.py::TestOperator::test_operator": (
        "expects the raft configuration's Index to be 0; consim answers the configuration "
        "entry's Raft index (Consul 0.7.2's meaning, kept on purpose)"
    ),
    "api/test_connect.py::TestConsulConnectCA::test_ca_update_configuration": (
        "consim runs no Connect CA: /v1/connect/ca/* is not served"
    ),
    "api/test_discovery_chain.py::TestDiscoveryChain::test_discovery_chain_get": (
        "consim compiles no discovery chains: /v1/discovery-chain/* is not served"
    ),
}
# Upstream's HTTP checks probe the dev agent's own http://localhost:8500: they can only pass
# when this suite's server got 127.0.0.1:8500 (another process may hold it).
NEEDS_DEV_PORT = {
    "api/test_agent.py::TestAgent::test_agent_checks",
    "api/test_agent.py::TestAgent::test_service_multi_check",
}


def _mark_expected_failures(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.path))
        if here not in path.parents:
            continue
        test_id = f"{path.relative_to(here).as_posix()}::{item.nodeid.split('::', 1)[1]}"
        reason = EXPECTED_FAILURES.get(test_id)
        if reason is None and test_id in NEEDS_DEV_PORT and _address()[1] != DEV_HTTP_PORT:
            reason = (
                "its HTTP check probes http://localhost:8500, and 127.0.0.1:8500 was taken "
                "when this run started, so the server listens elsewhere"
            )
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def _aiohttp_missing() -> bool:
    return importlib.util.find_spec("aiohttp") is None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # An environment installed before aiohttp joined the test extra: say so in the header
    # rather than fail collection; in CI (which installs the extra) a missing aiohttp fails.
    if collection_path.name == AIO_FILE and _aiohttp_missing() and os.environ.get("CI") != "true":
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    if _aiohttp_missing():
        return f"py_consul/{AIO_FILE} not collected: aiohttp missing (pip install -e '.[test]')"
    return None
