"""Client-side encryption: the sealed object format (storage/envelope.py) and the store that
seals (storage/encrypted.py) over a real filesystem store."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest

from cassy_scheduler.configfile.errors import ConfigError
from cassy_scheduler.node.manifest import ManifestError, read_manifest
from cassy_scheduler.server.settings import load_server_settings
from cassy_scheduler.storage import open_storage
from cassy_scheduler.storage.envelope import (
    CHUNK,
    HEADER,
    TAG,
    DecryptionError,
    Keyring,
    Sealer,
    UnknownKeyError,
    key_id,
    open_chunks,
    open_sealed,
    parse_key,
    plaintext_size,
    seal,
    sealed_key_id,
    stored_size,
)
from cassy_scheduler.storage.options import StorageOptions

KEYS = Keyring(os.urandom(32))
SIZES = (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7)


def _read_all(reader: Sealer) -> bytes:
    out = bytearray()
    buffer = bytearray(300_001)  # not a divisor of anything in the format
    while count := reader.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


@pytest.mark.parametrize("size", SIZES)
def test_sealed_bytes_open_to_the_same_content_and_sizes_follow_from_each_other(
    size: int,
) -> None:
    data = os.urandom(size)
    sealed = seal(data, KEYS)
    assert len(sealed) == stored_size(size) and plaintext_size(len(sealed)) == size
    assert open_sealed(sealed, KEYS, "x") == data
    reader = Sealer(io.BytesIO(data), KEYS)
    streamed = _read_all(reader)
    assert len(streamed) == stored_size(size) and reader.size == size
    for step in (777_777, 65_536, CHUNK + 16):  # pieces that split chunks, and that do not
        pieces = [streamed[i : i + step] for i in range(0, len(streamed), step)]
        assert b"".join(open_chunks(pieces, KEYS, "x")) == data


@pytest.mark.parametrize("where", [5, HEADER + 3, -1])
def test_a_changed_byte_anywhere_fails_authentication(where: int) -> None:
    sealed = bytearray(seal(os.urandom(2 * CHUNK + 10), KEYS))
    sealed[where] ^= 0x01
    with pytest.raises(DecryptionError):
        open_sealed(bytes(sealed), KEYS, "x")


def test_a_truncated_or_reordered_object_fails() -> None:
    sealed = seal(os.urandom(3 * CHUNK), KEYS)
    unit = CHUNK + 16
    with pytest.raises(DecryptionError, match=r"cut short|fails authentication"):
        open_sealed(sealed[: HEADER + 2 * unit], KEYS, "x")  # whole chunks, but not the last
    swapped = sealed[:HEADER] + sealed[HEADER + unit : HEADER + 2 * unit] + sealed[HEADER:]
    with pytest.raises(DecryptionError):
        open_sealed(swapped[: len(sealed)], KEYS, "x")


def test_a_wrong_key_is_named_and_a_previous_key_still_opens() -> None:
    old = Keyring(os.urandom(32))
    sealed = seal(b"sealed before the rotation", old)
    with pytest.raises(UnknownKeyError, match=key_id(old.current)):
        open_sealed(sealed, KEYS, "object 'k'")
    rotated = Keyring(os.urandom(32), previous=(old.current,))
    assert open_sealed(sealed, rotated, "x") == b"sealed before the rotation"
    assert plaintext_size(len(seal(b"new", rotated))) == 3


def test_an_object_stored_without_encryption_is_not_taken_for_a_sealed_one() -> None:
    with pytest.raises(DecryptionError, match="not encrypted"):
        open_sealed(b"plain manifest text, stored before encryption was turned on", KEYS, "x")


def test_sizes_no_sealed_object_has_and_heads_of_other_objects_are_not_taken_for_sealed() -> None:
    unit = CHUNK + TAG
    for stored in (0, HEADER + TAG - 1, HEADER + unit + 1, HEADER + unit + TAG - 1):
        assert plaintext_size(stored) is None, stored
    assert plaintext_size(HEADER + unit + TAG) is None  # a last chunk of a tag alone: empty
    assert plaintext_size(HEADER + TAG) == 0
    sealed = seal(b"x", KEYS)
    assert sealed_key_id(sealed[:HEADER]) == KEYS.current_id
    assert sealed_key_id(b"TOC.txt content") is None and sealed_key_id(sealed[:10]) is None


def test_keys_are_read_as_hex_or_base64_and_a_short_one_is_refused() -> None:
    key = os.urandom(32)
    assert parse_key(key.hex() + "\n", "f") == key
    assert parse_key(base64.b64encode(key).decode(), "f") == key
    with pytest.raises(ValueError, match="32-byte key"):
        parse_key("abcd", "f")


# --- the store that seals ---------------------------------------------------------------


def test_a_sealing_store_shows_plaintext_above_and_ciphertext_below(tmp_path: Path) -> None:
    plain = open_storage((tmp_path / "store").as_uri())
    sealed = open_storage(StorageOptions(uri=plain.uri, client_keys=(KEYS.current,)))
    content = os.urandom(CHUNK + 12_345) + b"SSTABLE-MARKER" * 100
    source = tmp_path / "nb-1-big-Data.db"
    source.write_bytes(content)
    stored = sealed.put_file("a/nb-1-big-Data.db", source)
    assert stored.size == len(content) and stored.sha256 is not None
    raw = (tmp_path / "store" / "a" / "nb-1-big-Data.db").read_bytes()
    assert b"SSTABLE-MARKER" not in raw and len(raw) == stored_size(len(content))
    listed = next(iter(sealed.list("a/")))
    assert (listed.size, listed.sha256) == (len(content), None)
    assert sealed.sha256("a/nb-1-big-Data.db") == stored.sha256
    fetched = tmp_path / "fetched"
    assert sealed.get_file("a/nb-1-big-Data.db", fetched).sha256 == stored.sha256
    assert fetched.read_bytes() == content
    assert sealed.copy("a/nb-1-big-Data.db", "b/nb-1-big-Data.db") is not None
    assert b"".join(sealed.chunks("b/nb-1-big-Data.db")) == content
    sealed.put_bytes("m/manifest.json", b'{"format_version": 1}')
    with pytest.raises(ManifestError, match="is encrypted"):
        read_manifest(plain, "m/manifest.json")


def test_a_tampered_object_leaves_no_file_where_it_was_fetched_to(tmp_path: Path) -> None:
    store = tmp_path / "store"
    sealed = open_storage(StorageOptions(uri=store.as_uri(), client_keys=(KEYS.current,)))
    sealed.put_bytes("k", os.urandom(2 * CHUNK))
    raw = bytearray((store / "k").read_bytes())
    raw[-100] ^= 0xFF
    (store / "k").write_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        sealed.get_file("k", tmp_path / "out")
    assert not (tmp_path / "out").exists()


_SERVER = '[server]\nport = 0\n\n[storage]\nuri = "{uri}"\n\n[storage.client_encryption]\n'


def test_the_server_reads_its_keys_at_start_and_names_a_bad_one(tmp_path: Path) -> None:
    current, old = tmp_path / "current.key", tmp_path / "old.key"
    current.write_text(os.urandom(32).hex())
    old.write_text(os.urandom(32).hex())
    config = tmp_path / "server.toml"
    uri = (tmp_path / "s").as_uri()
    config.write_text(
        _SERVER.format(uri=uri) + 'key_file = "current.key"\nprevious_key_files = ["old.key"]\n'
    )
    keys = load_server_settings(config).storage.client_keys
    assert keys == (bytes.fromhex(current.read_text()), bytes.fromhex(old.read_text()))
    assert "client_keys" not in repr(load_server_settings(config).storage)

    config.write_text(_SERVER.format(uri=uri) + 'key_file = "missing.key"\n')
    with pytest.raises(ConfigError, match=r"storage\.client_encryption\.key_file"):
        load_server_settings(config)
    (tmp_path / "short.key").write_text("00ff")
    config.write_text(_SERVER.format(uri=uri) + 'key_file = "short.key"\n')
    with pytest.raises(ConfigError, match="32-byte key"):
        load_server_settings(config)


def test_the_keys_travel_to_a_node_program_with_the_storage_terms() -> None:
    """A node over SSH seals what it uploads itself: its request carries the keys (on the
    session's input, as the credentials are), never its repr."""
    options = StorageOptions(uri="s3://b/p", client_keys=(KEYS.current, b"\x01" * 32))
    document = json.loads(json.dumps(options.to_document()))
    assert StorageOptions.from_document(document).client_keys == options.client_keys
    assert KEYS.current.hex() not in repr(options)
    assert (
        StorageOptions.from_document(StorageOptions(uri="file:///x").to_document()).client_keys
        == ()
    )
