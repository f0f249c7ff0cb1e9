"""Client-side encryption's object format: each object sealed with a data key of its own,
that key wrapped by the key-encryption key (KEK) the operator holds, the content encrypted
in authenticated chunks so that a large object streams through bounded memory.

    header (87 bytes)
      magic        b"CSE\\x01"          4   the format and its version
      kek_id                          16   which KEK wrapped the data key (see key_id)
      wrap_nonce                      12
      wrapped_key                     48   AES-256-GCM(KEK, data key), the magic and kek_id
                                           authenticated with it
      stream_nonce                     7   random: the first bytes of every chunk's nonce
    chunks
      AES-256-GCM(data key, nonce = stream_nonce + counter (4, big-endian) + last (1),
                  aad = header) of each MiB of the content, 16 bytes of tag each; the last
      chunk (possibly empty) has last = 1, so a truncated object fails as surely as an
      altered one, and chunks cannot be reordered.

Stored size = plaintext + 87 + 16 per chunk, so the plaintext size is known from a listing
alone. Object keys are not bound: a server-side copy of an object stays readable, and the
manifests' SHA-256 of each file's plaintext (themselves encrypted) say which content belongs
under which key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cassy_scheduler.storage.errors import StorageError, WriteCancelledError
from cassy_scheduler.storage.streams import Reader

MAGIC = b"CSE\x01"
KEY_BYTES = 32
CHUNK = 1 << 20
TAG = 16
_ID = 16
_WRAP_NONCE = 12
_WRAPPED = KEY_BYTES + TAG
_STREAM_NONCE = 7
HEADER = len(MAGIC) + _ID + _WRAP_NONCE + _WRAPPED + _STREAM_NONCE
_UNIT = CHUNK + TAG


class DecryptionError(StorageError):
    """An object that does not decrypt: altered, truncated, or not sealed by us."""


class UnknownKeyError(DecryptionError):
    """An object sealed with a KEK that is not configured (a wrong or a retired key)."""


def key_id(kek: bytes) -> str:
    """The KEK's public name (32 hex digits), recorded in every object and manifest: it says
    which key is needed without telling anything of it."""
    return hashlib.sha256(b"cassy-scheduler kek v1\x00" + kek).digest()[:_ID].hex()


def stored_size(plaintext: int) -> int:
    chunks = max(1, -(-plaintext // CHUNK))
    return HEADER + plaintext + TAG * chunks


def plaintext_size(stored: int) -> int | None:
    """The content's size for a sealed object of `stored` bytes; None when no sealed object
    has that size."""
    rest = stored - HEADER
    units, tail = divmod(rest, _UNIT)
    # A last chunk holds at least its tag, and only an empty content has a chunk of a tag alone.
    if rest < TAG or 0 < tail < TAG or (tail == TAG and units > 0):
        return None
    return rest - TAG * (units + (tail > 0))


def sealed_key_id(head: bytes) -> str | None:
    """The id of the KEK that sealed an object, from its first bytes; None when they are not
    the start of a sealed object."""
    if len(head) < len(MAGIC) + _ID or not head.startswith(MAGIC):
        return None
    return head[len(MAGIC) : len(MAGIC) + _ID].hex()


@dataclass(frozen=True)
class Keyring:
    """The current KEK (it seals) and earlier ones (they only open objects sealed before a
    rotation)."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        for kek in (self.current, *self.previous):
            if len(kek) != KEY_BYTES:
                raise ValueError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(kek)}")

    def __repr__(self) -> str:
        return f"Keyring(current={key_id(self.current)}, previous={len(self.previous)})"

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def find(self, wanted: bytes) -> bytes | None:
        for kek in (self.current, *self.previous):
            if key_id(kek) == wanted.hex():
                return kek
        return None


def _nonce(stream_nonce: bytes, counter: int, last: bool) -> bytes:
    return stream_nonce + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _new_header(kek: bytes) -> tuple[bytes, AESGCM, bytes]:
    """A fresh data key, wrapped; the header, the data key's cipher and the stream nonce."""
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce = os.urandom(_WRAP_NONCE)
    stream_nonce = os.urandom(_STREAM_NONCE)
    kek_id = bytes.fromhex(key_id(kek))
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, MAGIC + kek_id)
    header = MAGIC + kek_id + wrap_nonce + wrapped + stream_nonce
    return header, AESGCM(data_key), stream_nonce


def _open_header(header: bytes, keys: Keyring, what: str) -> tuple[AESGCM, bytes]:
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise DecryptionError(
            f"{what} is not encrypted by cassy-scheduler (no header): it was stored without "
            "client-side encryption or altered; restore it with a server whose storage has no "
            "[storage.client_encryption], or check the store"
        )
    at = len(MAGIC)
    kek_id = header[at : at + _ID]
    at += _ID
    wrap_nonce = header[at : at + _WRAP_NONCE]
    at += _WRAP_NONCE
    wrapped = header[at : at + _WRAPPED]
    stream_nonce = header[at + _WRAPPED : HEADER]
    kek = keys.find(kek_id)
    if kek is None:
        raise UnknownKeyError(
            f"{what} was encrypted with key {kek_id.hex()}, which is not configured (the "
            f"current key is {keys.current_id}): add that key to [storage.client_encryption] "
            "previous_key_files"
        )
    try:
        data_key = AESGCM(kek).decrypt(wrap_nonce, wrapped, MAGIC + kek_id)
    except InvalidTag:
        raise DecryptionError(
            f"{what}: its data key does not unwrap with key {kek_id.hex()}: the object's "
            "header was altered in storage"
        ) from None
    return AESGCM(data_key), stream_nonce


def seal(data: bytes, keys: Keyring) -> bytes:
    """A small object, sealed in memory."""
    header, cipher, stream_nonce = _new_header(keys.current)
    pieces = [header]
    view = memoryview(data)
    count = max(1, -(-len(data) // CHUNK))
    for index in range(count):
        piece = view[index * CHUNK : (index + 1) * CHUNK]
        pieces.append(
            cipher.encrypt(_nonce(stream_nonce, index, index == count - 1), piece, header)
        )
    return b"".join(pieces)


def open_sealed(data: bytes, keys: Keyring, what: str) -> bytes:
    return b"".join(open_chunks([data], keys, what))


def open_chunks(pieces: Iterable[bytes], keys: Keyring, what: str) -> Iterator[bytes]:
    """The plaintext of a sealed object whose stored bytes come in `pieces` of any size,
    chunk by chunk; DecryptionError at the first chunk that fails (nothing after it is
    given out) or when the stream ends before its last chunk. Whole chunks are opened
    where they lie in the piece that brought them; only a chunk split across pieces is
    copied."""
    source = iter(pieces)
    carry = bytearray()
    for piece in source:
        carry += piece
        if len(carry) >= HEADER:
            break
    header = bytes(carry[:HEADER])
    cipher, stream_nonce = _open_header(header, keys, what)
    del carry[:HEADER]
    counter = 0

    def opened(unit: bytes | bytearray | memoryview, last: bool) -> bytes:
        try:
            return cipher.decrypt(_nonce(stream_nonce, counter, last), unit, header)
        except InvalidTag:
            raise DecryptionError(
                f"{what} fails authentication at chunk {counter}"
                f"{' (the last)' if last else ''}: it was altered or cut short in storage"
            ) from None

    while len(carry) > _UNIT:  # the first piece may hold whole chunks already
        yield opened(bytes(carry[:_UNIT]), last=False)
        del carry[:_UNIT]
        counter += 1
    for piece in source:
        view = memoryview(piece)
        at = 0
        if carry:  # a chunk begun in an earlier piece: complete it, if more follows it
            if len(carry) + len(view) <= _UNIT:
                carry += view
                continue
            at = _UNIT - len(carry)
            carry += view[:at]
            yield opened(carry, last=False)
            counter += 1
            carry = bytearray()
        while len(view) - at > _UNIT:  # more follows this unit: it is not the last
            yield opened(view[at : at + _UNIT], last=False)
            at += _UNIT
            counter += 1
        carry = bytearray(view[at:])
    if len(carry) < TAG:
        raise DecryptionError(f"{what} ends inside a chunk's tag: it was cut short in storage")
    yield opened(carry, last=True)


class Sealer:
    """The sealed form of `source`'s bytes, chunk by chunk (`chunks`, for a backend's
    put_chunks) or as a Reader (for put_stream); it hashes and counts the plaintext on the
    way, and polls `cancelled` between chunks. Each chunk is read into a buffer of its own
    and sealed from there: no byte is copied in Python."""

    def __init__(
        self, source: Reader, keys: Keyring, cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        self._source = source
        self._cancelled = cancelled
        self._header, self._cipher, self._stream_nonce = _new_header(keys.current)
        self._next: memoryview | None = None
        self._counter = 0
        self._done = False
        self._digest = hashlib.sha256()
        self._reading: Iterator[bytes] | None = None
        self._pending = memoryview(b"")
        self.size = 0

    @property
    def sha256(self) -> str:
        """Of the plaintext read so far (all of it, once the stream has ended)."""
        return self._digest.hexdigest()

    def _read_chunk(self) -> memoryview:
        view = memoryview(bytearray(CHUNK))
        filled = 0
        while filled < CHUNK:
            count = self._source.readinto(view[filled:])  # type: ignore[arg-type]
            if not count:
                break
            filled += count
        return view[:filled]

    def chunks(self) -> Iterator[bytes]:
        yield self._header
        chunk = self._read_chunk()
        while True:
            if self._cancelled():
                raise WriteCancelledError(f"sealing was cancelled after {self.size} bytes")
            following = self._read_chunk() if len(chunk) == CHUNK else memoryview(b"")
            last = not following
            self._digest.update(chunk)
            self.size += len(chunk)
            nonce = _nonce(self._stream_nonce, self._counter, last)
            yield self._cipher.encrypt(nonce, chunk, self._header)
            self._counter += 1
            if last:
                return
            chunk = following

    def readinto(self, buffer: bytearray, /) -> int:
        if self._reading is None:
            self._reading = self.chunks()
        while not self._pending:
            sealed = next(self._reading, None)
            if sealed is None:
                return 0
            self._pending = memoryview(sealed)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def parse_key(text: str, what: str) -> bytes:
    """A KEK as written in its file: 64 hex digits or base64 of 32 bytes."""
    value = text.strip()
    try:
        key = bytes.fromhex(value) if len(value) == 2 * KEY_BYTES else base64.b64decode(value)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{what} does not hold a {KEY_BYTES}-byte key (64 hex digits or base64): "
            "make one with `cassy-scheduler key --write FILE`"
        )
    return key


def key_ids(keys: Sequence[bytes]) -> list[str]:
    return [key_id(k) for k in keys]
