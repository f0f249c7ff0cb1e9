"""[storage]: a URI and its provider's options, read into StorageOptions; credentials read
from the variable or file named, never from the table; each mistake named by key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.server.settings import load_server_settings
from cassy_scheduler.storage.options import StorageOptions


def load(tmp_path: Path, table: str) -> StorageOptions:
    path = tmp_path / "server.toml"
    path.write_text("[storage]\n" + table)
    return load_server_settings(path).storage


def problems(tmp_path: Path, table: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, table)
    return str(refused.value)


def test_an_s3_table_with_its_options_and_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_S3_KEY", "AKIAEXAMPLE")
    (tmp_path / "secret").write_text("very-secret\n")
    options = load(
        tmp_path,
        'uri = "s3://acme/cassandra"\nendpoint = "http://127.0.0.1:9000"\n'
        'region = "eu-west-1"\nencryption = "kms"\nkms_key_id = "arn:aws:kms:k"\n'
        'part_size = "32MiB"\nconcurrency = 4\nmax_bandwidth = "200MB/s"\n'
        'retry_timeout = "30s"\naccess_key_id_env = "BACKUP_S3_KEY"\n'
        'secret_access_key_file = "secret"\n',
    )
    assert options.part_size == 32 << 20 and options.concurrency == 4
    assert options.max_bandwidth == 200_000_000 and options.retry_timeout_s == 30
    assert dict(options.credentials) == {
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "very-secret",
    }
    assert "very-secret" not in repr(options)


def test_a_credential_written_inline_is_refused_with_the_fix(tmp_path: Path) -> None:
    said = problems(tmp_path, 'uri = "s3://acme/x"\nsecret_access_key = "abc123abc"\n')
    assert "server.toml:3: storage.secret_access_key" in said
    assert "secret_access_key_env" in said
    assert "abc123abc" not in said


def test_a_missing_variable_names_the_key_and_the_variable(tmp_path: Path) -> None:
    said = problems(tmp_path, 'uri = "az://c/x"\naccount = "a"\naccount_key_env = "NOT_SET_X"\n')
    assert "storage.account_key_env" in said and "NOT_SET_X" in said


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('uri = "file:///b"\nendpoint = "http://127.0.0.1:9"\n', "storage.endpoint"),
        ('uri = "gs://b/x"\nregion = "eu"\n', "storage.region"),
        ('uri = "s3://b/x"\naccount = "a"\n', "storage.account"),
        ('uri = "s3://b/x"\naccount_key_env = "K"\n', "storage.account_key_env"),
        ('uri = "s3://b/x"\nencryption = "kms"\n', "storage.encryption"),
        ('uri = "s3://b/x"\nkms_key_id = "k"\n', "storage.kms_key_id"),
        ('uri = "s3://b/x"\nendpoint = "minio:9000"\n', "storage.endpoint"),
        ('uri = "s3://b/x"\npart_size = "1MiB"\n', "storage.part_size"),
        ('uri = "s3://b/x"\npart_size = "1GiB"\n', "storage.part_size"),
        ('uri = "s3://b/x"\nmax_bandwidth = "0MB/s"\n', "storage.max_bandwidth"),
        ('uri = "az://c/x"\n', "storage.uri"),
        ('uri = "s3://b/x"\npart_size = "lots"\n', "storage.part_size"),
        ('uri = "s3://b/x"\nmax_bandwidth = "200MB"\n', "storage.max_bandwidth"),
        ('uri = "s3:///x"\n', "storage.uri"),
        (
            'uri = "gs://b/x"\nservice_account_file = "missing.json"\n',
            "storage.service_account_file",
        ),
    ],
)
def test_each_mistake_is_named_by_its_key(tmp_path: Path, table: str, named: str) -> None:
    assert named in problems(tmp_path, table)


def test_a_file_uri_alone_reads_as_before(tmp_path: Path) -> None:
    options = load(tmp_path, 'uri = "file:///var/backups/cassandra"\n')
    assert options == StorageOptions(uri="file:///var/backups/cassandra")
