"""Server configuration and logging: flags beat environment variables, log masking, synth, data dir."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
import structlog
from conftest import ServerFactory

from nixlookup.server.app import ServerConfig
from nixlookup.server.app import main as server_main
from nixlookup.server.app._config import DEFAULT_LISTEN, SynthConfig, parse_args
from nixlookup.server.logs import configure_logging, get_logger, mask_digits_in_text
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


@pytest.fixture(name="reset_structlog", autouse=True)
def fixture_reset_structlog() -> object:
    """Each test starts from structlog's defaults and leaves them behind."""
    structlog.reset_defaults()
    yield None
    structlog.reset_defaults()


def test_flags_beat_environment_variables_which_beat_defaults() -> None:
    """--grace wins over NIXLOOKUP_GRACE; NIXLOOKUP_MAX_BATCH wins over the default; others stay default."""
    config = parse_args(["serve", "--grace", "3"], {"NIXLOOKUP_GRACE": "7", "NIXLOOKUP_MAX_BATCH": "1_000"})
    assert isinstance(config, ServerConfig)
    assert (config.grace_seconds, config.max_batch, config.listen) == (3.0, 1000, DEFAULT_LISTEN)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"NIXLOOKUP_MAX_BATCH": "lots"}, "NIXLOOKUP_MAX_BATCH"),
        ({"NIXLOOKUP_LOG_FORMAT": "xml"}, "NIXLOOKUP_LOG_FORMAT"),
        ({"NIXLOOKUP_LISTEN": "50051"}, "HOST:PORT"),
    ],
)
def test_a_bad_environment_variable_is_named(
    env: dict[str, str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid variable stops the server with exit code 2 and one line naming the variable (or the
    expected form)."""
    with pytest.raises(SystemExit) as caught:
        parse_args(["serve"], env)
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert words in line


def test_masking_hides_every_phone_number_shape_but_keeps_versions() -> None:
    """Digit runs as numbers are written become stars + last two digits; exempt keys keep their value."""
    assert mask_digits_in_text("call 070-123 45 67 now") == "call ********67 now"
    assert mask_digits_in_text("+46701234567 and 0046 70 123 45 67") == "*********67 and ***********67"
    assert mask_digits_in_text("batch 4711 of 100000") == "batch 4711 of 100000"
    assert mask_digits_in_text("register/00000042.journal") == "register/00000042.journal"
    assert mask_digits_in_text("/srv/0701234567.snap") == "/srv/********67.snap"
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    get_logger("test").info(
        "checked", number="070-123 45 67", key=46701234567, count=3_000_000, version="20260101-1234567"
    )
    event = json.loads(stream.getvalue())
    assert event["number"] == "********67"
    assert event["key"] == "*********67"
    assert event["count"] == 3_000_000
    assert event["version"] == "20260101-1234567"


def test_log_level_filters_and_console_format(tmp_path: Path) -> None:
    """At info level debug events are dropped; console format is not JSON."""
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    get_logger("test").debug("hidden")
    get_logger("test").info("shown", rows=2)
    text = stream.getvalue()
    assert "hidden" not in text
    assert "shown" in text
    assert not text.lstrip().startswith("{")


def test_synth_writes_a_register_the_server_serves(server_factory: ServerFactory, tmp_path: Path) -> None:
    """`nixlookup-server synth` writes a text register and a snapshot; a server serves the snapshot."""
    text = tmp_path / "synthetic.txt"
    snapshot = tmp_path / "synthetic.snap"
    config = parse_args(["synth", "--size", "3000", "--seed", "5", "--out", str(text)])
    assert isinstance(config, SynthConfig)
    assert (
        server_main(["synth", "--size", "3000", "--seed", "5", "--out", str(text), "--log-format", "json"])
        == 0
    )
    common = ["synth", "--size", "3000", "--seed", "5", "--log-format", "json"]
    assert server_main([*common, "--out", str(snapshot), "--format", "snapshot"]) == 0
    lines = text.read_text(encoding="ascii").split()
    assert len(lines) == 3000
    assert all(line.startswith("+") for line in lines)
    server = server_factory(["--register", str(snapshot)])
    with grpc.insecure_channel(server.target) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        info = stub.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5)
        answer = stub.Check(lookup_pb2.CheckRequest(text=lines[0]), timeout=5)
    assert info.register.count == 3000
    assert info.register.synthetic
    assert answer.verdict == lookup_pb2.BLOCKED


def test_a_data_dir_without_a_register_starts_on_the_synthetic_register(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """`serve --data-dir DIR` on an empty DIR (as `make serve` does) serves a synthetic register and Admin."""
    server = server_factory(["--data-dir", str(tmp_path / "data"), "--synthetic-size", "20000"])
    with grpc.insecure_channel(server.target) as channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=5
        )
    assert info.register.synthetic
    assert info.register.count == 20_000
    assert [entry.kind for entry in info.register.history][-1:] == ["snapshot"]
    assert server.health_status("nixlookup.v1.Admin") == "SERVING"
    assert "SYNTHETIC" in server.log_text()
