"""The auth file, authentication and the authorisation table, in process (the real port: test_security_*)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixlookup.server.errors import PermissionDeniedError, UnauthenticatedError
from nixlookup.server.rpc._auth import Authenticator, authorize
from nixlookup.server.rpc._principals import (
    ANONYMOUS,
    AuthFileError,
    Principal,
    Role,
    parse_auth_file,
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


AUTH_FILE = f"""
[[principal]]
name = "acme-dialer"
token_sha256 = "{digest("acme-token")}"
callers = ["acme"]
roles = ["check"]

[[principal]]
name = "acme-lists"
token_sha256 = "{digest("acme-lists-token").upper()}"
cert_subject = "CN=acme-lists"
callers = ["acme"]
roles = ["check", "lists"]

[[principal]]
name = "ops"
cert_subject = "CN=ops,O=Example"
callers = ["*"]
roles = ["admin", "check", "lists", "replicate"]

[[principal]]
name = "research"
token_sha256 = "{digest("research-token")}"
roles = ["check"]

[[principal]]
name = "agency"
token_sha256 = "{digest("agency-token")}"
callers = ["acme", "bank-y"]
roles = ["check"]
"""


@pytest.fixture(name="authenticator")
def fixture_authenticator(tmp_path: Path) -> Authenticator:
    """An authenticator over the five-principal file above."""
    path = tmp_path / "auth.toml"
    path.write_text(AUTH_FILE, encoding="utf-8")
    return Authenticator(path)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("user-agent", "test"), ("authorization", f"Bearer {token}")]


def test_the_file_loads_every_principal_with_its_fields() -> None:
    """Names, callers, roles, digests (upper-case hex accepted) and subjects are read as written."""
    principals = parse_auth_file(AUTH_FILE)
    by_name = {p.name: p for p in principals.principals}
    assert set(by_name) == {"acme-dialer", "acme-lists", "ops", "research", "agency"}
    assert by_name["acme-lists"].token_sha256 == hashlib.sha256(b"acme-lists-token").digest()
    assert by_name["ops"].any_caller
    assert by_name["ops"].roles == frozenset(Role)
    assert by_name["research"].callers == frozenset()
    assert principals.by_subject["CN=ops,O=Example"] is by_name["ops"]
    assert principals.uses_tokens
    assert principals.uses_certificates


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "defines no [[principal]]"),
        ("[[principal]]\nname='a'\ntoken_sha256='ab'\nroles=['check']", "64 hex digits"),
        (f"[[principal]]\nname='a'\ntoken_sha256='{digest('x')}'\nrole=['check']", "unknown field(s) role"),
        (f"[[principal]]\nname='a'\ntoken_sha256='{digest('x')}'\nroles=['root']", "unknown role 'root'"),
        (f"[[principal]]\nname='a'\ntoken_sha256='{digest('x')}'\nroles=[]", "`roles` is empty"),
        ("[[principal]]\nname='a'\nroles=['check']", "needs `token_sha256` or `cert_subject`"),
        (f"[[principal]]\ntoken_sha256='{digest('x')}'\nroles=['check']", "`name` is required"),
        (
            f"[[principal]]\nname='a'\ntoken_sha256='{digest('x')}'\nroles=['check']\n"
            f"[[principal]]\nname='b'\ntoken_sha256='{digest('x')}'\nroles=['check']",
            "'a' and 'b' have the same `token_sha256`",
        ),
        (
            "[[principal]]\nname='a'\ncert_subject='CN=a'\nroles=['check']\n"
            "[[principal]]\nname='a'\ncert_subject='CN=b'\nroles=['check']",
            "same `name`",
        ),
        (
            f"[[principal]]\nname='a'\ntoken_sha256='{digest('x')}'\ncallers=['*','acme']\nroles=['check']",
            '"*" (all callers) beside others',
        ),
        ("principal = 3", "array of tables"),
        ("[principals]\nx=1", "unknown top-level key(s) principals"),
        ("[[principal]\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_what_is_wrong(text: str, named: str) -> None:
    """Typos, bad digests, unknown roles and duplicates refuse the file with a message naming them."""
    with pytest.raises(AuthFileError) as refused:
        parse_auth_file(text, source="auth.toml")
    assert named in str(refused.value)
    assert "auth.toml" in str(refused.value)


def test_tokens_and_subjects_name_their_principal(authenticator: Authenticator) -> None:
    """A known token is its principal; a known certificate subject is, when no token is sent."""
    assert authenticator.authenticate(bearer("acme-token"), {}).name == "acme-dialer"
    assert authenticator.authenticate(bearer("acme-lists-token"), {}).name == "acme-lists"
    subject = {"x509_subject": [b"CN=ops,O=Example"], "transport_security_type": [b"ssl"]}
    assert authenticator.authenticate([("user-agent", "x")], subject).name == "ops"
    # the token wins over the certificate when both are there
    assert authenticator.authenticate(bearer("research-token"), subject).name == "research"


@pytest.mark.parametrize(
    ("metadata", "auth_context", "named"),
    [
        ([], {}, "needs credentials"),
        (bearer("wrong"), {}, "bearer token is not known"),
        ([("authorization", "Basic YWJj")], {}, "must be `Bearer TOKEN`"),
        ([("authorization", "Bearer ")], {}, "must be `Bearer TOKEN`"),
        ([], {"x509_subject": [b"CN=mallory"]}, "'CN=mallory' is no principal"),
    ],
)
def test_missing_or_unknown_credentials_are_unauthenticated(
    authenticator: Authenticator,
    metadata: list[tuple[str, str]],
    auth_context: dict[str, list[bytes]],
    named: str,
) -> None:
    """No token, a wrong token, a malformed header or an unknown subject: UNAUTHENTICATED saying which."""
    with pytest.raises(UnauthenticatedError) as refused:
        authenticator.authenticate(metadata, auth_context)
    assert named in str(refused.value)


def test_without_an_auth_file_every_call_is_anonymous() -> None:
    """No auth file: no credentials needed, every role and caller (behaviour as before auth)."""
    open_server = Authenticator(None)
    assert not open_server.enabled
    assert not open_server.needs_principal("/nixlookup.v1.Admin/Reload")
    assert open_server.authenticate([], {}) is ANONYMOUS
    assert authorize(ANONYMOUS, Role.ADMIN) == ""
    assert authorize(ANONYMOUS, Role.CHECK, "anyone") == "anyone"


def test_health_needs_no_principal_everything_else_does(authenticator: Authenticator) -> None:
    """Health is probed by load balancers without a token; reflection and the services are not."""
    assert not authenticator.needs_principal("/grpc.health.v1.Health/Check")
    assert authenticator.needs_principal("/nixlookup.v1.Lookup/Check")
    assert authenticator.needs_principal("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")


def test_a_refused_reload_keeps_the_principals_in_force(authenticator: Authenticator) -> None:
    """SIGHUP with a broken file changes nothing; a good file replaces the principals."""
    assert authenticator.path is not None
    authenticator.path.write_text("[[principal]]\nname='x'\n", encoding="utf-8")
    assert not authenticator.reload()
    assert authenticator.authenticate(bearer("acme-token"), {}).name == "acme-dialer"
    authenticator.path.write_text(
        f"[[principal]]\nname='new'\ntoken_sha256='{digest('new-token')}'\nroles=['check']\n",
        encoding="utf-8",
    )
    assert authenticator.reload()
    assert authenticator.authenticate(bearer("new-token"), {}).name == "new"
    with pytest.raises(UnauthenticatedError):
        authenticator.authenticate(bearer("acme-token"), {})


def principal(callers: set[str], roles: set[Role]) -> Principal:
    return Principal(name="p", callers=frozenset(callers), roles=frozenset(roles))


def test_the_table_rows() -> None:
    """Each row of docs/security.md's table, with the caller a call ends up acting as."""
    dialer = principal({"acme"}, {Role.CHECK})
    assert authorize(dialer, Role.CHECK, "") == "acme"  # the only caller, when the request leaves it empty
    assert authorize(dialer, Role.CHECK, "acme") == "acme"
    with pytest.raises(PermissionDeniedError, match="'p' may not act as caller 'bank-y'"):
        authorize(dialer, Role.CHECK, "bank-y")
    with pytest.raises(PermissionDeniedError, match="'p' lacks role 'lists'"):
        authorize(dialer, Role.LISTS, "acme")
    with pytest.raises(PermissionDeniedError, match="lacks role 'admin'"):
        authorize(principal({"acme"}, {Role.CHECK, Role.LISTS}), Role.ADMIN)
    agency = principal({"acme", "bank-y"}, {Role.CHECK})
    with pytest.raises(PermissionDeniedError, match="several callers"):
        authorize(agency, Role.CHECK, "")
    assert authorize(principal(set(), {Role.CHECK}), Role.CHECK, "") == ""  # register only
    assert authorize(principal({"*"}, {Role.LISTS}), Role.LISTS, "whoever") == "whoever"


@given(
    callers=st.sets(st.sampled_from(["a", "b", "c", "*"]), max_size=2).filter(
        lambda s: "*" not in s or len(s) == 1
    ),
    roles=st.sets(st.sampled_from(list(Role)), min_size=1),
    role=st.sampled_from(list(Role)),
    caller=st.one_of(st.none(), st.sampled_from(["", "a", "b", "c"])),
)
def test_authorize_agrees_with_a_plain_statement_of_the_rules(
    callers: set[str], roles: set[Role], role: Role, caller: str | None
) -> None:
    """Allowed exactly when the role is held and the caller is one the principal may act as."""
    who = principal(callers, roles)
    everyone = "*" in callers
    if role not in roles:
        expected: str | None = None
    elif caller is None:
        expected = ""
    elif caller:
        expected = caller if everyone or caller in callers else None
    elif role is Role.CHECK and not everyone and len(callers) > 1:
        expected = None
    elif role is Role.CHECK and not everyone and len(callers) == 1:
        expected = next(iter(callers))
    else:
        expected = ""
    if expected is None:
        with pytest.raises(PermissionDeniedError):
            authorize(who, role, caller)
    else:
        assert authorize(who, role, caller) == expected
