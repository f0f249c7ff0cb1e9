"""The access rules (server/access.py), the allow-list of Cassandra hosts (server/hostallow.py)
and the [access] table (server/accesssettings.py): pure logic, no server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.protocol.generated import access_pb2, backups_pb2, cassy_pb2
from cassy_scheduler.server.access import (
    ANYONE,
    AUDITED,
    REQUIRED_ROLE,
    Credentials,
    Identity,
    Refusal,
    Role,
    authorize,
    required_role,
    token_digest,
)
from cassy_scheduler.server.errors import HostNotAllowedError
from cassy_scheduler.server.gate import RefusalThrottle, source_of
from cassy_scheduler.server.hostallow import HostAllowList
from cassy_scheduler.server.settings import load_server_settings

READER = Identity("monitoring", Role.READER)
OPERATOR = Identity("scheduler", Role.OPERATOR)
ADMIN = Identity("alice", Role.ADMIN)
CREDENTIALS = Credentials(
    tokens={token_digest("r-token"): READER, token_digest("o-token"): OPERATOR},
    certificates={"alice.ops.example": ADMIN},
)


def _methods(descriptor: object, service: str) -> set[str]:
    found = descriptor.services_by_name[service]  # type: ignore[attr-defined]
    return {f"/{found.full_name}/{m.name}" for m in found.methods}


def test_every_method_of_our_services_has_a_role_of_its_own() -> None:
    """A call added to a proto must be placed in the table (unlisted ones need admin)."""
    methods = (
        _methods(cassy_pb2.DESCRIPTOR, "Cassy")
        | _methods(backups_pb2.DESCRIPTOR, "Backups")
        | _methods(access_pb2.DESCRIPTOR, "Access")
    )
    assert methods <= set(REQUIRED_ROLE)
    assert required_role("/rpc.Cassy/SomethingNew") is Role.ADMIN
    assert {m for m, r in REQUIRED_ROLE.items() if r >= Role.OPERATOR} >= AUDITED


@pytest.mark.parametrize(
    ("identity", "method", "allowed"),
    [
        (READER, "/rpc.Cassy/ListBackups", True),
        (READER, "/grpc.health.v1.Health/Check", True),
        (READER, "/rpc.Cassy/TakeBackup", False),
        (OPERATOR, "/rpc.Cassy/TakeBackup", True),
        (OPERATOR, "/rpc.Cassy/RegisterCluster", True),
        (OPERATOR, "/rpc.Cassy/RestoreBackup", False),
        (OPERATOR, "/cassy_scheduler.v1.Backups/DeleteBackup", False),
        (ADMIN, "/cassy_scheduler.v1.Backups/DeleteBackup", True),
        (ADMIN, "/cassy_scheduler.v1.Access/ListAudit", True),
    ],
)
def test_each_role_may_do_what_the_ones_below_it_may(
    identity: Identity, method: str, allowed: bool
) -> None:
    assert (authorize(identity, method) is None) is allowed


def test_a_refusal_names_the_role_needed_and_the_one_held() -> None:
    refusal = authorize(READER, "/rpc.Cassy/TakeBackup")
    assert refusal == Refusal(
        "denied", "TakeBackup needs the operator role; identity 'monitoring' has reader"
    )


def test_a_token_names_its_identity_and_decides_alone() -> None:
    assert CREDENTIALS.identify("Bearer o-token", []) == OPERATOR
    assert CREDENTIALS.identify("bearer  r-token ", []) == READER
    wrong = CREDENTIALS.identify("Bearer nope", ["alice.ops.example"])
    assert isinstance(wrong, Refusal) and wrong.kind == "unauthenticated"
    assert "matches no identity" in wrong.message


def test_a_certificate_is_known_by_its_common_name_or_any_alternative_name() -> None:
    assert CREDENTIALS.identify(None, ["alice", "alice.ops.example"]) == ADMIN
    unknown = CREDENTIALS.identify(None, ["mallory.example"])
    assert isinstance(unknown, Refusal) and "mallory.example" in unknown.message
    both = Credentials(certificates={"alice": ADMIN, "ops.example": READER})
    refused = both.identify(None, ["alice", "ops.example"])  # one certificate, two identities
    assert isinstance(refused, Refusal) and "more than one identity" in refused.message
    assert both.identify(None, ["ops.example", "other"]) == READER


def test_without_credentials_a_server_with_identities_asks_for_them() -> None:
    found = CREDENTIALS.identify(None, [])
    assert isinstance(found, Refusal) and "authorization: Bearer" in found.message
    basic = CREDENTIALS.identify("Basic dXNlcg==", [])
    assert isinstance(basic, Refusal) and "Bearer <token>" in basic.message


def test_a_server_without_identities_lets_everyone_do_everything() -> None:
    assert Credentials().identify(None, []) == ANYONE
    assert authorize(ANYONE, "/cassy_scheduler.v1.Backups/DeleteBackup") is None


def test_only_the_digest_of_a_token_is_kept() -> None:
    digest = token_digest("secret\n")
    assert digest == token_digest("secret") and len(digest) == 64 and "secret" not in digest


# --- the allow-list -------------------------------------------------------------------------


def test_addresses_are_admitted_by_networks_and_names_by_patterns() -> None:
    hosts = HostAllowList.parse(["127.0.0.0/8", "cassandra-*.prod.example"])
    hosts.check_host("127.0.0.5")
    hosts.check_host("Cassandra-3.prod.example", lookup=lambda _: [])
    with pytest.raises(HostNotAllowedError, match=r"'10\.0\.0\.1' is not among them"):
        hosts.check_host("10.0.0.1")


def test_a_name_is_admitted_when_every_address_it_resolves_to_is_listed() -> None:
    hosts = HostAllowList.parse(["10.1.0.0/16"])
    hosts.check_host("db.example", lookup=lambda _: ["10.1.2.3"])
    with pytest.raises(HostNotAllowedError):
        hosts.check_host("db.example", lookup=lambda _: ["10.1.2.3", "192.0.2.1"])
    with pytest.raises(HostNotAllowedError):
        hosts.check_host("nowhere.example", lookup=lambda _: [])


def test_the_nodes_a_cluster_reports_must_be_in_a_listed_network() -> None:
    hosts = HostAllowList.parse(["127.0.0.0/8"])
    hosts.check_nodes(["127.0.0.2", "127.0.0.3"])
    with pytest.raises(HostNotAllowedError, match=r"10\.9\.9\.9"):
        hosts.check_nodes(["127.0.0.2", "10.9.9.9"])
    HostAllowList.parse(["db-*.example"]).check_nodes(["10.9.9.9"])  # names say nothing of IPs


def test_an_entry_that_is_neither_a_network_nor_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="neither a network"):
        HostAllowList.parse(["10.0.0.0/33"])


# --- the [access] table ---------------------------------------------------------------------

_HEAD = '[server]\nhost = "{host}"\nport = 0\n\n[storage]\nuri = "file:///tmp/x"\n\n'


def _settings(tmp_path: Path, access: str, host: str = "127.0.0.1") -> Path:
    path = tmp_path / "server.toml"
    path.write_text(_HEAD.format(host=host) + access)
    return path


def test_tokens_are_read_from_a_file_the_environment_or_as_a_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ops.token").write_text("o-token\n")
    monkeypatch.setenv("READER_TOKEN", "r-token")
    path = _settings(
        tmp_path,
        '[access.identities.scheduler]\nrole = "operator"\ntoken_file = "ops.token"\n\n'
        '[access.identities.monitoring]\nrole = "reader"\ntoken_env = "READER_TOKEN"\n\n'
        f'[access.identities.alice]\nrole = "admin"\ntoken_sha256 = "{token_digest("a")}"\n',
    )
    credentials = load_server_settings(path).access.credentials
    assert credentials.identify("Bearer o-token", []) == OPERATOR
    assert credentials.identify("Bearer r-token", []) == READER
    assert credentials.identify("Bearer a", []) == ADMIN


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_server_settings(path)
    return str(caught.value)


def test_a_token_written_inline_is_refused_with_the_way_to_give_it(tmp_path: Path) -> None:
    text = _problems(
        _settings(tmp_path, '[access.identities.x]\nrole = "reader"\ntoken = "plain"\n')
    )
    assert "access.identities.x.token" in text and "token_file" in text and ":10:" in text


def test_a_missing_token_file_names_the_file_the_field_and_the_fix(tmp_path: Path) -> None:
    text = _problems(
        _settings(tmp_path, '[access.identities.x]\nrole = "reader"\ntoken_file = "gone"\n')
    )
    assert "access.identities.x.token_file" in text and "cannot read" in text


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    text = _problems(_settings(tmp_path, '[access.identities.x]\nrole = "root"\n'))
    assert "access.identities.x.role" in text


def test_tokens_in_plaintext_beyond_loopback_stop_the_start_unless_allowed(
    tmp_path: Path,
) -> None:
    access = f'[access.identities.x]\nrole = "reader"\ntoken_sha256 = "{token_digest("t")}"\n'
    text = _problems(_settings(tmp_path, access, host="0.0.0.0"))
    assert "server.host" in text and "plaintext" in text
    allowed = _settings(tmp_path, "[access]\nallow_plaintext_tokens = true\n\n" + access, "::")
    assert load_server_settings(allowed).access.credentials.enabled


def test_a_certificate_name_needs_client_certificates(tmp_path: Path) -> None:
    text = _problems(
        _settings(tmp_path, '[access.identities.x]\nrole = "admin"\ncert_name = "x"\n')
    )
    assert "access.identities.x.cert_name" in text and "client_ca_file" in text


def test_two_identities_with_one_token_are_refused(tmp_path: Path) -> None:
    digest = token_digest("same")
    text = _problems(
        _settings(
            tmp_path,
            f'[access.identities.a]\nrole = "reader"\ntoken_sha256 = "{digest}"\n\n'
            f'[access.identities.b]\nrole = "admin"\ntoken_sha256 = "{digest}"\n',
        )
    )
    assert "the same token as identity 'a'" in text


def test_a_bad_allow_list_entry_is_named(tmp_path: Path) -> None:
    text = _problems(_settings(tmp_path, '[access]\ncluster_hosts = ["10.0.0.0/40"]\n'))
    assert "access.cluster_hosts" in text


def test_refusals_of_unidentified_callers_are_recorded_ten_a_minute_per_source() -> None:
    now = [0.0]
    throttle = RefusalThrottle(per_minute=10, overall=15, sources=2, clock=lambda: now[0])
    flood = source_of("ipv4:10.0.0.9:40000", "/rpc.Cassy/TakeBackup")
    admitted = [throttle.admit(flood) for _ in range(25)]
    assert admitted[:10] == [0] * 10 and admitted[10:] == [None] * 15
    other = source_of("ipv4:10.0.0.8:40001", "/rpc.Cassy/TakeBackup")
    assert [throttle.admit(other) for _ in range(6)] == [0] * 5 + [None]  # 15 in all
    now[0] = 61.0
    assert throttle.admit(flood) == 15  # the next row says what was left out
    assert throttle.admit(flood) == 0
    # Forgetting: only the two sources heard from last are remembered.
    throttle.admit(source_of("ipv4:10.0.0.7:1", "/m"))
    throttle.admit(source_of("ipv4:10.0.0.6:1", "/m"))
    assert throttle.admit(other) == 0  # its one left-out refusal was forgotten with it


def test_an_ipv6_caller_is_one_source_for_its_whole_64() -> None:
    one = source_of("ipv6:[2001:db8:1:2::1]:5000", "/m")
    assert one == source_of("ipv6:[2001:db8:1:2:ffff::9]:6000", "/m") == "ipv6:2001:db8:1:2::/64 /m"
    assert one != source_of("ipv6:[2001:db8:1:3::1]:5000", "/m")
    assert source_of("ipv4:10.0.0.9:40000", "/m") == "ipv4:10.0.0.9 /m"


def test_audit_keep_is_a_duration_and_a_bad_one_is_named(tmp_path: Path) -> None:
    settings = load_server_settings(_settings(tmp_path, '[access]\naudit_keep = "400d"\n'))
    assert settings.access.audit_keep == timedelta(days=400)
    assert load_server_settings(_settings(tmp_path, "")).access.audit_keep is None
    with pytest.raises(ConfigError) as raised:
        load_server_settings(_settings(tmp_path, '[access]\naudit_keep = "soon"\n'))
    assert "access.audit_keep" in str(raised.value)
