"""The DNS wire format behind SRV lookups: names with compression, answers, refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cassy_scheduler.server.dns import (
    DnsError,
    DnsNameNotFoundError,
    DnsServer,
    encode_name,
    encode_query,
    parse_response,
    read_name,
    system_dns_server,
)

HEADER = struct.Struct("!HHHHHH")


def test_names_follow_compression_pointers() -> None:
    message = b"\x00" * 12 + encode_name("apps.test") + b"\x04app1\xc0\x0c"
    name, end = read_name(message, 12 + len(encode_name("apps.test")))
    assert name == "app1.apps.test."
    assert end == len(message)


def test_a_pointer_loop_is_refused() -> None:
    message = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(DnsError, match="broken name pointer"):
        read_name(message, 12)


def test_a_label_longer_than_63_bytes_is_refused() -> None:
    with pytest.raises(DnsError, match="1 to 63 bytes"):
        encode_name("x" * 64 + ".test")


def _response(query_id: int, flags: int, answers: bytes = b"", count: int = 0) -> bytes:
    question = encode_query(query_id, "_a._tcp.apps.test", 33)[12:]
    return HEADER.pack(query_id, flags, 1, count, 0, 0) + question + answers


def test_srv_answer_with_a_compressed_target() -> None:
    question_name_at = 12
    rdata = struct.pack("!HHH", 1, 2, 20052) + b"\x04app1\xc0" + bytes([question_name_at + 8])
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, 60, len(rdata)) + rdata
    parsed = parse_response(_response(7, 0x8400, answer, 1), 7, "_a._tcp.apps.test", 33)
    (record,) = parsed.records
    assert (record.priority, record.weight, record.port) == (1, 2, 20052)
    assert record.target == "app1.apps.test."


@pytest.mark.parametrize(
    ("flags", "error", "words"),
    [
        (0x8403, DnsNameNotFoundError, "NXDOMAIN"),
        (0x8402, DnsError, "SERVFAIL"),
        (0x8405, DnsError, "REFUSED"),
    ],
)
def test_error_codes_are_named(flags: int, error: type[DnsError], words: str) -> None:
    with pytest.raises(error, match=words):
        parse_response(_response(7, flags), 7, "_a._tcp.apps.test", 33)


def test_an_answer_to_another_query_is_refused() -> None:
    with pytest.raises(DnsError, match="does not match"):
        parse_response(_response(8, 0x8400), 7, "_a._tcp.apps.test", 33)


def test_system_dns_server_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n")
    assert system_dns_server(conf) == DnsServer("10.0.0.2")
    conf.write_text("search example.com\n")
    with pytest.raises(DnsError, match="set dns_server"):
        system_dns_server(conf)
