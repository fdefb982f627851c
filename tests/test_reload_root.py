"""--reload-root confines Admin/Reload to one directory; outside it the answer is PERMISSION_DENIED."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory, make_mobile_keys, write_register

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def test_reload_root_allows_inside_and_refuses_outside(server_factory: ServerFactory, tmp_path: Path) -> None:
    """A file inside the root reloads; a file outside, or a link inside pointing out, is refused by name."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = write_register(inbox / "first.txt", make_mobile_keys(2_000, seed=1))
    second = write_register(inbox / "second.txt", make_mobile_keys(2_000, seed=2))
    outside = write_register(tmp_path / "outside.txt", make_mobile_keys(2_000, seed=3))
    (inbox / "sneaky.txt").symlink_to(outside.path)
    server = server_factory(
        ["--data-dir", str(tmp_path / "data"), "--register", str(first.path), "--reload-root", str(inbox)]
    )
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        reloaded = admin.Reload(lookup_pb2.ReloadRequest(path=str(second.path), force=True), timeout=30)
        assert reloaded.info.count == 2_000
        for refused in (outside.path, inbox / "sneaky.txt", inbox / ".." / "outside.txt"):
            with pytest.raises(grpc.RpcError) as caught:
                admin.Reload(lookup_pb2.ReloadRequest(path=str(refused), force=True), timeout=30)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            assert "--reload-root" in (caught.value.details() or "")  # type: ignore[attr-defined]
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=5
        )
        assert info.register.version == reloaded.info.version, "refusals left the reloaded version serving"
