"""Write ledgers as a SEP-54 lake: zstd ``LedgerCloseMetaBatch`` objects at computed keys, plus ``.config.json``.

Used to build sample and test lakes, to re-pack ledger files into a lake layout, and (:func:`resequence`)
to build long lakes with a valid hash chain out of a few real ledgers, for scale tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from typing import Any, Iterable, Iterator

import zstandard

from cdp_ray.lake.formats import peek_header
from cdp_ray.lake.schema import LakeSchema
from cdp_ray.lake.store import split_uri, open_filesystem


def batch_bytes(start: int, end: int, ledgers: list[bytes]) -> bytes:
    """XDR of a ``LedgerCloseMetaBatch`` built from ``LedgerCloseMeta`` XDR values."""
    return struct.pack(">III", start, end, len(ledgers)) + b"".join(ledgers)


def write_lake(
    ledgers: Iterable[bytes],
    uri: str,
    schema: LakeSchema,
    *,
    network_passphrase: str,
    storage_options: dict[str, Any] | None = None,
    level: int = 3,
) -> list[str]:
    """Write ``ledgers`` (``LedgerCloseMeta`` XDR values) under ``uri``; return the keys written, in order.

    Each batch object must receive consecutive ledgers (a lake may start or end mid-batch).
    """
    protocol, root = split_uri(uri)
    fs = open_filesystem(protocol, storage_options)
    root = root.rstrip("/")
    cctx = zstandard.ZstdCompressor(level=level)
    groups: dict[str, dict[int, bytes]] = {}
    for raw in ledgers:
        seq = peek_header(raw).sequence
        groups.setdefault(schema.key_for(seq), {})[seq] = raw
    keys = []
    for key, items in sorted(groups.items(), key=lambda kv: min(kv[1])):
        seqs = sorted(items)
        if seqs[-1] - seqs[0] + 1 != len(seqs):
            raise ValueError(f"batch {key} would have gaps: ledgers {seqs} are not consecutive")
        if protocol == "file":
            fs.makedirs(f"{root}/{key.rsplit('/', 1)[0]}" if "/" in key else root, exist_ok=True)
        fs.pipe_file(f"{root}/{key}", cctx.compress(batch_bytes(seqs[0], seqs[-1], [items[q] for q in seqs])))
        keys.append(key)
    config = {
        "networkPassphrase": network_passphrase,
        "version": "1.0",
        "compression": "zstd",
        "ledgersPerBatch": schema.ledgers_per_file,
        "batchesPerPartition": schema.files_per_partition,
    }
    fs.pipe_file(f"{root}/.config.json", json.dumps(config, indent=2).encode())
    return keys


def resequence(
    ledgers: Iterable[bytes], start: int, count: int, *, previous_hash: bytes = bytes(32),
    close_time: int | None = None, seconds_per_ledger: int = 5,
) -> Iterator[bytes]:
    """``count`` ledgers numbered from ``start``, cycling through real ``LedgerCloseMeta`` XDR values.

    Each copy gets its ``ledgerSeq``, a ``previousLedgerHash`` chaining it to the copy before (the first
    to ``previous_hash``) and, with ``close_time``, a close time ``seconds_per_ledger`` after the previous
    one; its ``LedgerHeaderHistoryEntry.hash`` is recomputed. Transaction sets and results are untouched,
    so their hashes in the header stay valid; transaction hashes repeat across copies.
    """
    prev = previous_hash
    for i, raw in enumerate(itertools.islice(itertools.cycle(ledgers), count)):
        peek = peek_header(raw)
        lcm = bytearray(raw)
        lcm[peek.start + 4 : peek.start + 36] = prev
        if close_time is not None:
            struct.pack_into(">Q", lcm, peek.start + 68, close_time + i * seconds_per_ledger)
        struct.pack_into(">I", lcm, peek.sequence_at, start + i)
        prev = hashlib.sha256(lcm[peek.start : peek.end]).digest()
        lcm[peek.start - 32 : peek.start] = prev
        yield bytes(lcm)
