"""Reload validation on a real server: files that are cut short, ten times too big, the wrong shape or not
text at all, and paths no file can have, are refused with the status and the check named; the serving
version keeps answering; no phone number in a path is echoed in full, neither to the client nor in the log.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import numpy as np
import phonenumbers
import pytest
from conftest import (
    RegisterFile,
    ServerFactory,
    data_dir_server,
    make_mobile_keys,
    seeded_register,
    write_register,
)

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_CUT_NUMBER = "+4681234567"  # what is left of +46812345678 (08-123 456 78) after its last digit is cut


@pytest.fixture(name="register", scope="module")
def fixture_register(tmp_path_factory: pytest.TempPathFactory) -> RegisterFile:
    """1,000 seeded mobile numbers."""
    return seeded_register(tmp_path_factory, 1000, seed=501)


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory, register: RegisterFile, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """One server for the module, its data directory seeded from the register."""
    return data_dir_server(module_server_factory, register, tmp_path_factory)


def _write_cut_at_a_line_boundary(path: Path, register: RegisterFile) -> None:
    """The register plus one fixed-line number, cut one digit short with no line break after it."""
    text = "".join(f"+{int(key)}\n" for key in register.keys) + "+46812345678\n"
    path.write_text(text[:-2], encoding="ascii")


def _write_ten_times_bigger(path: Path, register: RegisterFile) -> None:
    write_register(path, make_mobile_keys(10 * register.keys.size, seed=502))


def _write_relationship_csv(path: Path, register: RegisterFile) -> None:
    rows = "".join(f"+{int(key)},2027-06-30\n" for key in register.keys)
    path.write_text("number,end\n" + rows, encoding="ascii")


def _write_random_bytes(path: Path, register: RegisterFile) -> None:
    path.write_bytes(
        np.random.default_rng(503).integers(0, 256, size=3 * 1024 * 1024, dtype=np.uint8).tobytes()
    )


@pytest.mark.parametrize(
    ("name", "write", "code", "needle"),
    [
        ("cut.txt", _write_cut_at_a_line_boundary, grpc.StatusCode.FAILED_PRECONDITION, "looks truncated"),
        ("big.txt", _write_ten_times_bigger, grpc.StatusCode.FAILED_PRECONDITION, r"900\.0% more than"),
        ("rel.csv", _write_relationship_csv, grpc.StatusCode.INVALID_ARGUMENT, "column of dates \\('end'\\)"),
        ("noise.csv", _write_random_bytes, grpc.StatusCode.INVALID_ARGUMENT, "not UTF-8 text"),
        ("noise.bin", _write_random_bytes, grpc.StatusCode.INVALID_ARGUMENT, "not UTF-8|not valid numbers"),
    ],
    ids=[
        "cut-at-a-line-boundary",
        "ten-times-bigger",
        "relationship-csv-as-register",
        "random-csv",
        "random",
    ],
)
def test_bad_files_are_refused_and_the_serving_version_answers(  # noqa: PLR0917 - parametrized
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register: RegisterFile,
    tmp_path: Path,
    name: str,
    write: object,
    code: grpc.StatusCode,
    needle: str,
) -> None:
    """Each file: the status and check named, the serving version unchanged, the cut number not BLOCKED."""
    lookup, admin = stubs
    path = tmp_path / name
    write(path, register)  # type: ignore[operator]
    before = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register.version
    with pytest.raises(grpc.RpcError) as refused:
        admin.Reload(lookup_pb2.ReloadRequest(path=str(path)), timeout=30)
    assert refused.value.code() == code, refused.value.details()  # type: ignore[attr-defined]
    assert re.search(needle, refused.value.details()), refused.value.details()  # type: ignore[attr-defined]
    assert phonenumbers.is_valid_number(phonenumbers.parse(_CUT_NUMBER))  # the cut line alone looks fine
    cut = lookup.Check(lookup_pb2.CheckRequest(text=_CUT_NUMBER), timeout=5)
    assert (cut.verdict, cut.register_version) == (lookup_pb2.ALLOWED, before)
    listed = lookup.Check(lookup_pb2.CheckRequest(e164=int(register.keys[0])), timeout=5)
    assert listed.verdict == lookup_pb2.BLOCKED


def test_force_loads_a_ten_times_bigger_file(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register: RegisterFile,
    tmp_path: Path,
) -> None:
    """The count check is a guard, not a wall: force loads the file; reloading the original needs it too."""
    lookup, admin = stubs
    big = tmp_path / "big.txt"
    _write_ten_times_bigger(big, register)
    loaded = admin.Reload(lookup_pb2.ReloadRequest(path=str(big), force=True), timeout=30)
    assert loaded.info.count == 10 * register.keys.size
    admin.Reload(lookup_pb2.ReloadRequest(path=str(register.path), force=True), timeout=30)
    assert lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register.count == 1_000


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/srv/nix/register\x00.txt", "NUL byte"),
        ("/srv/" + "x" * 300 + ".txt", "over the file system's limit of 255"),
        ("/" + "d/" * 2100 + "r.txt", "over the file system's limit of 4096"),
        ("", "path is required"),
    ],
    ids=["nul-byte", "long-name", "long-path", "empty"],
)
def test_unusable_paths_are_invalid_argument(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub], path: str, needle: str
) -> None:
    """Paths no file can have: INVALID_ARGUMENT naming the problem, never INTERNAL."""
    _lookup, admin = stubs
    with pytest.raises(grpc.RpcError) as refused:
        admin.Reload(lookup_pb2.ReloadRequest(path=path), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert needle in refused.value.details()  # type: ignore[attr-defined]


def test_a_phone_number_in_a_reload_path_is_masked_in_the_error_and_the_log(
    server: ServerProcess,
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register: RegisterFile,
    tmp_path: Path,
) -> None:
    """A file named after a customer's number: the error and the log show only its last two digits."""
    _lookup, admin = stubs
    missing = tmp_path / "calls-0701234567.txt"
    cut = tmp_path / "call list 070-765 43 21.txt"
    _write_cut_at_a_line_boundary(cut, register)
    for path, digits in ((missing, "0701234567"), (cut, "0707654321")):
        with pytest.raises(grpc.RpcError) as refused:
            admin.Reload(lookup_pb2.ReloadRequest(path=str(path)), timeout=10)
        details = refused.value.details()  # type: ignore[attr-defined]
        assert digits[-2:] in details
        assert digits not in re.sub(r"[ -]", "", details)
    log = server.log_text()
    assert "reload_refused" in log
    assert "0701234567" not in log
    assert "0707654321" not in re.sub(r"[ -]", "", log)
