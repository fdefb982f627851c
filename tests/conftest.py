"""Shared fixtures: real server processes on loopback and small hand-made registers.

- `server_factory` / `module_server_factory` start `nixlookup-server` processes through
  `nixlookup.bench.serverproc` (the harness the benchmarks use too) and stop every one of them (by pid)
  when the test / module ends, pass or fail.
- `secured` is a TLS server with an auth file and Admin on its own listener (one per test module;
  `tests/secured_server.py`), `secured_lookup` / `secured_admin` stubs on its two listeners.
- `stubs` are Lookup and Admin stubs on one plaintext channel to the module's `server` fixture (which
  each module defines, mostly with `data_dir_server`); `seeded_register` writes a module's own register.
- `small_register` is a text register of seeded random Swedish mobile numbers with the same keys as a
  Python `set`: the oracle the service's verdicts are compared with.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2_grpc

if TYPE_CHECKING:
    from secured_server import Secured

__all__ = ["RegisterFile", "ServerFactory"]

ServerFactory = Callable[..., ServerProcess]
"""``factory(args: Sequence[str] = (), env: Mapping[str, str] | None = None, **kwargs) -> ServerProcess``
(started and SERVING; kwargs go to `ServerProcess`)."""

SERVER_ONLY_PACKAGES = (
    "pyroaring",
    "numba",
    "llvmlite",
    "phonenumbers",
    "structlog",
    "grpc_health",
    "grpc_reflection",
    "xxhash",
)
"""What only the server needs: the client must import and run with every one of them missing."""

_MOBILE_PREFIXES = np.array([70, 72, 73, 76, 79], dtype=np.uint64)


@dataclass(frozen=True)
class RegisterFile:
    """A register file on disk and the keys it holds."""

    path: Path
    keys: NDArray[np.uint64]
    key_set: frozenset[int]


def make_mobile_keys(count: int, seed: int) -> NDArray[np.uint64]:
    """`count` distinct seeded random Swedish mobile E.164 keys (46 7X NNN NN NN)."""
    rng = np.random.default_rng(seed)
    prefixes = _MOBILE_PREFIXES[rng.integers(0, len(_MOBILE_PREFIXES), size=count * 2)]
    subscribers = rng.integers(0, 10_000_000, size=count * 2).astype(np.uint64)
    keys = np.uint64(46_000_000_000) + prefixes * np.uint64(10_000_000) + subscribers
    unique = np.unique(keys)
    rng.shuffle(unique)
    return unique[:count]


def write_register(path: Path, keys: NDArray[np.uint64]) -> RegisterFile:
    """Write `keys` as a text register (one ``+46...`` number per line) and return its description."""
    path.write_text("".join(f"+{int(key)}\n" for key in keys), encoding="ascii")
    return RegisterFile(path=path, keys=keys, key_set=frozenset(int(k) for k in keys))


def national(key: int) -> str:
    """A mobile key as a Swede writes it: 46701234567 -> "070-123 45 67"."""
    digits = "0" + str(key)[2:]
    return f"{digits[:3]}-{digits[3:6]} {digits[6:8]} {digits[8:]}"


def seeded_register(
    tmp_path_factory: pytest.TempPathFactory, count: int, seed: int, name: str = "register.txt"
) -> RegisterFile:
    """A text register of `count` seeded random mobile numbers in a fresh temporary directory."""
    return write_register(tmp_path_factory.mktemp("reg") / name, make_mobile_keys(count, seed=seed))


def data_dir_server(
    factory: ServerFactory,
    register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
    *extra: str,
) -> ServerProcess:
    """A server on a fresh data directory seeded from `register` (`extra` flags appended)."""
    data_dir = tmp_path_factory.mktemp("data") / "data"
    return factory(["--data-dir", str(data_dir), "--register", str(register.path), *extra])


@pytest.fixture(name="small_register", scope="session")
def fixture_small_register(tmp_path_factory: pytest.TempPathFactory) -> RegisterFile:
    """A 5,000-number text register of seeded random mobile numbers."""
    directory = tmp_path_factory.mktemp("register")
    return write_register(directory / "register.txt", make_mobile_keys(5_000, seed=20080601))


def _factory(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def start(
        args: Sequence[str] = (), env: Mapping[str, str] | None = None, **kwargs: object
    ) -> ServerProcess:
        # The synthetic NIX-Adresserat register's default 2,000 people cost ~0.9 s per start: tests that
        # check mail give their own register, the others get a token one.
        env = {"NIXLOOKUP_SYNTHETIC_ADDRESS_SIZE": "50", **(env or {})}
        server = ServerProcess(args, env, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            if server.running:
                server.stop(signal.SIGTERM)


@pytest.fixture(name="server_factory")
def fixture_server_factory(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start real servers for one test; every one is stopped when the test ends."""
    yield from _factory(request)


@pytest.fixture(name="module_server_factory", scope="module")
def fixture_module_server_factory(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start real servers shared by one test module; every one is stopped when the module ends."""
    yield from _factory(request)


@pytest.fixture(name="secured", scope="module")
def fixture_secured(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Secured:
    """A TLS server with five token principals, Admin on its own listener, acme's opt-out list loaded."""
    from secured_server import start_secured

    return start_secured(module_server_factory, small_register, tmp_path_factory.mktemp("secured"))


@pytest.fixture(name="secured_lookup")
def fixture_secured_lookup(secured: Secured) -> Iterator[lookup_pb2_grpc.LookupStub]:
    """A Lookup stub on the secured server's public listener (TLS, no token: the tests send their own)."""
    with secured.channel() as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


@pytest.fixture(name="secured_admin")
def fixture_secured_admin(secured: Secured) -> Iterator[lookup_pb2_grpc.AdminStub]:
    """An Admin stub on the secured server's Admin listener (TLS, no token: the tests send their own)."""
    with secured.channel(secured.server.admin_target) as channel:
        yield lookup_pb2_grpc.AdminStub(channel)


@pytest.fixture(name="stubs")
def fixture_stubs(
    server: ServerProcess,
) -> Iterator[tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub]]:
    """Lookup and Admin stubs on one plaintext channel to the module's `server` fixture."""
    with grpc.insecure_channel(server.target) as channel:
        yield lookup_pb2_grpc.LookupStub(channel), lookup_pb2_grpc.AdminStub(channel)
