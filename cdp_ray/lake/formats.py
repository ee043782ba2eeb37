"""Ledger file formats: split a file's bytes into per-ledger ``LedgerCloseMeta`` XDR without decoding it.

Shapes found in the wild (and in ``shared/stellar-data``):

* ``batch``: galexie ``LedgerCloseMetaBatch`` (zstd in a lake, sometimes raw or uncompressed),
* ``lcm``: a single ``LedgerCloseMeta`` (often gzip-compressed),
* ``serialized``: ``SerializedLedgerCloseMeta`` v0 (a 4-byte zero discriminant, then the LCM),
* ``stream``: ``xdr.Stream`` framing (4-byte record marks with the high bit set),
* ``base64``: text, one base64 ``LedgerCloseMeta`` per line.

``detect`` picks the shape from the content; a shape can also be forced.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

import zstandard

from cdp_ray.errors import CorruptLedgerFileError

FileFormat = Literal["auto", "batch", "lcm", "serialized", "stream", "base64"]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n")


@dataclass(frozen=True)
class HeaderPeek:
    """What can be read from an LCM's first bytes without decoding it."""

    lcm_version: int
    sequence: int
    ledger_version: int
    close_time: int
    hash: bytes
    header_hash_ok: bool
    previous_ledger_hash: bytes
    start: int  # offset of the LedgerHeader (its hash is the 32 bytes before it)
    end: int  # offset just past the LedgerHeader
    sequence_at: int = 0  # offset of ledgerSeq


def decompress(data: bytes, key: str) -> bytes:
    """Undo zstd or gzip compression, recognised by magic bytes (not by suffix)."""
    try:
        if data[:4] == ZSTD_MAGIC:
            return _unzstd(data, key)
        if data[:2] == GZIP_MAGIC:
            return gzip.decompress(data)
    except (zstandard.ZstdError, OSError, EOFError, zlib.error) as exc:
        raise CorruptLedgerFileError(key, f"decompression failed: {exc}") from exc
    return data


def _unzstd(data: bytes, key: str) -> bytes:
    """Every zstd frame of ``data``, concatenated; a frame cut short is an error, not partial output."""
    out, rest = [], data
    while rest:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out.append(dobj.decompress(rest))
        if not dobj.eof:
            raise CorruptLedgerFileError(
                key, f"truncated zstd stream: the frame ends early ({len(data)} bytes in the file)"
            )
        rest = dobj.unused_data
        if rest and rest[:4] != ZSTD_MAGIC:
            raise CorruptLedgerFileError(key, f"{len(rest)} bytes of garbage after the zstd frame")
    return b"".join(out)


def _u32(buf: bytes, off: int) -> int:
    return struct.unpack_from(">I", buf, off)[0]


def peek_header(lcm: bytes, key: str = "<bytes>") -> HeaderPeek:
    """Read version, sequence, close time and header hash of one ``LedgerCloseMeta`` XDR."""
    try:
        v = _u32(lcm, 0)
        if v not in (0, 1, 2):
            raise ValueError(f"unknown LedgerCloseMeta version {v}")
        off = 4
        if v in (1, 2):  # LedgerCloseMetaExt: v0, or v1 {ExtensionPoint ext; int64 sorobanFeeWrite1KB}
            ext = _u32(lcm, off)
            if ext not in (0, 1):
                raise ValueError(f"unknown LedgerCloseMetaExt {ext}")
            off += 4 if ext == 0 else 16
        entry_hash = lcm[off : off + 32]
        off += 32
        hstart = off
        ledger_version = _u32(lcm, off)
        prev = lcm[off + 4 : off + 36]
        off += 36 + 32  # ledgerVersion, previousLedgerHash, scpValue.txSetHash
        close_time = struct.unpack_from(">Q", lcm, off)[0]
        off += 8
        n_upgrades = _u32(lcm, off)
        off += 4
        for _ in range(n_upgrades):
            off += 4 + ((_u32(lcm, off) + 3) & ~3)
        sv_ext = _u32(lcm, off)
        off += 4
        if sv_ext == 1:  # LedgerCloseValueSignature: nodeID (type + 32 bytes), signature<64>
            off += 36
            off += 4 + ((_u32(lcm, off) + 3) & ~3)
        elif sv_ext != 0:
            raise ValueError(f"unknown StellarValue ext {sv_ext}")
        off += 32 + 32  # txSetResultHash, bucketListHash
        seq_at = off
        seq = _u32(lcm, off)
        off += 4 + 8 + 8 + 4 + 8 + 4 + 4 + 4 + 4 * 32
        h_ext = _u32(lcm, off)
        off += 4
        if h_ext == 1:
            off += 4
            if _u32(lcm, off) != 0:
                raise ValueError("unknown LedgerHeaderExtensionV1 ext")
            off += 4
        elif h_ext != 0:
            raise ValueError(f"unknown LedgerHeader ext {h_ext}")
        if off > len(lcm):
            raise ValueError("truncated ledger header")
    except (struct.error, ValueError) as exc:
        raise CorruptLedgerFileError(key, f"not a LedgerCloseMeta: {exc}") from exc
    ok = hashlib.sha256(lcm[hstart:off]).digest() == entry_hash
    return HeaderPeek(v, seq, ledger_version, close_time, entry_hash, ok, prev, hstart, off, seq_at)


def _peek_or_none(buf: bytes) -> HeaderPeek | None:
    try:
        return peek_header(buf)
    except CorruptLedgerFileError:
        return None


def detect(buf: bytes) -> FileFormat | None:
    """Guess the shape of decompressed file content (None: no known shape fits).

    A shape whose ledger header verifies (hash = sha256 of the header) wins; failing that, one whose
    header parses, so that a ledger with a bad hash is reported as such rather than as an unknown shape.
    """
    if len(buf) >= 4 and buf[0] & 0x80:  # an xdr.Stream record mark, if a ledger header follows it
        n = _u32(buf, 0) & 0x7FFFFFFF
        peek = _peek_or_none(buf[4 : 4 + n])
        if peek is not None and (4 + n <= len(buf) or peek.header_hash_ok):  # a whole record, or a cut one
            return "stream"
    candidates: list[tuple[FileFormat, int, int | None]] = []
    if len(buf) >= 12:
        start, end, count = struct.unpack_from(">III", buf, 0)
        if start <= end and count == end - start + 1:
            if count > 1:
                return "batch"
            candidates.append(("batch", 12, start))
    if buf[:4] == b"\0\0\0\0":
        candidates.append(("serialized", 4, None))
    candidates.append(("lcm", 0, None))
    peeks = [(fmt, _peek_or_none(buf[off:]), seq) for fmt, off, seq in candidates]
    for fmt, peek, seq in peeks:
        if peek is not None and peek.header_hash_ok and seq in (None, peek.sequence):
            return fmt
    if buf and set(buf[:4096]) <= _B64_CHARS:
        return "base64"
    for fmt, peek, seq in peeks:
        if peek is not None and seq in (None, peek.sequence):
            return fmt
    return None


def split_ledgers(data: bytes, key: str, fmt: FileFormat = "auto") -> list[bytes]:
    """Split one file's (possibly compressed) bytes into ``LedgerCloseMeta`` XDR values, in file order."""
    if not data:
        raise CorruptLedgerFileError(key, "the file is empty (0 bytes): an interrupted export or upload")
    buf = decompress(data, key)
    if not buf:
        raise CorruptLedgerFileError(key, f"the file decompresses to 0 bytes ({len(data)} bytes compressed)")
    if fmt == "auto":
        fmt = detect(buf) or _unknown_shape(buf, key, compressed=buf is not data)
    if fmt == "lcm":
        return [buf]
    if fmt == "serialized":
        return [buf[4:]]
    if fmt == "base64":
        try:
            return [base64.b64decode(line, validate=True) for line in buf.split() if line]
        except binascii.Error as exc:
            raise CorruptLedgerFileError(key, f"invalid base64 line: {exc}") from exc
    if fmt == "stream":
        out, off = [], 0
        while off < len(buf):
            if off + 4 > len(buf):
                raise CorruptLedgerFileError(key, f"truncated xdr.Stream record mark at byte {off}")
            n = _u32(buf, off) & 0x7FFFFFFF
            if off + 4 + n > len(buf):
                raise CorruptLedgerFileError(key, f"truncated xdr.Stream record at byte {off}")
            out.append(buf[off + 4 : off + 4 + n])
            off += 4 + n
        return out
    return _split_batch(buf, key)


def _unknown_shape(buf: bytes, key: str, *, compressed: bool) -> FileFormat:
    """Raise the error for content no ledger file shape fits, saying what it does hold."""
    what = f"decompresses fine to {len(buf)} bytes, but they are" if compressed else f"holds {len(buf)} bytes that are"
    if len(buf) >= 12:
        start, end, count = struct.unpack_from(">III", buf, 0)
        if start <= end and count == end - start + 1:
            try:
                peek_header(buf[12:], key)
            except CorruptLedgerFileError as exc:
                raise CorruptLedgerFileError(
                    key, f"a LedgerCloseMetaBatch header (ledgers {start}-{end}) followed by bytes that are not a "
                    f"LedgerCloseMeta ({exc.reason.removeprefix('not a LedgerCloseMeta: ')})") from None
    raise CorruptLedgerFileError(
        key, f"{what} not ledgers: no LedgerCloseMetaBatch header, LedgerCloseMeta, xdr.Stream or base64 lines "
        f"(first bytes {buf[:12].hex()})")


def _split_batch(buf: bytes, key: str) -> list[bytes]:
    if len(buf) < 12:
        raise CorruptLedgerFileError(key, f"truncated LedgerCloseMetaBatch: {len(buf)} bytes")
    start, end, count = struct.unpack_from(">III", buf, 0)
    if count != end - start + 1:
        raise CorruptLedgerFileError(
            key, f"LedgerCloseMetaBatch holds {count} ledgers but claims range {start}-{end}"
        )
    if count == 1:
        return [buf[12:]]
    # LedgerCloseMeta values carry no length: walk them with a decoder and slice the original bytes.
    skip = _lcm_skipper()
    out, off = [], 12
    for i in range(count):
        try:
            nxt = skip(buf, off)
        except Exception as exc:  # the decoders raise assorted errors on malformed input
            raise CorruptLedgerFileError(
                key, f"LedgerCloseMetaBatch {start}-{end}: ledger #{i + 1} of {count} is undecodable ({exc})"
            ) from exc
        out.append(buf[off:nxt])
        off = nxt
    if off != len(buf):
        raise CorruptLedgerFileError(key, f"{len(buf) - off} trailing bytes after LedgerCloseMetaBatch {start}-{end}")
    return out


def _lcm_skipper():
    """``(buf, offset) -> offset past the LedgerCloseMeta there``: the compiled codec when built, else stellar_sdk."""
    try:
        from cdp_ray.xdr import fast

        if fast.resolve_engine() != "sdk":
            return lambda buf, off: fast.decode_prefix("LedgerCloseMeta", buf, off)[1]
    except Exception:  # the fast engine is optional: not built, or deselected
        pass
    from stellar_sdk import xdr
    from xdrlib3 import Unpacker

    def skip(buf: bytes, off: int) -> int:
        unpacker = Unpacker(buf)
        unpacker.set_position(off)
        xdr.LedgerCloseMeta.unpack(unpacker)
        return unpacker.get_position()

    return skip
