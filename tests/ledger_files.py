"""Ledgers from the shared data set: single pubnet ledgers decoded (stellar-etl golden inputs and loose files),
and runs of testnet ledgers as raw ``LedgerCloseMeta`` (light-horizon)."""

from __future__ import annotations

from pathlib import Path

from cdp_ray.lake.formats import split_ledgers
from cdp_ray.xdr import decode_ledger
from conftest import PUBNET


def load(stellar_data, rel: str):
    """The one pubnet ledger in the file at ``rel`` under the data set."""
    path = stellar_data / rel
    (raw,) = split_ledgers(path.read_bytes(), str(path))
    return decode_ledger(raw, PUBNET)


def reconstructed(stellar_data, seq: int):
    """Ledger ``seq`` from the stellar-etl golden inputs (``stellar-etl-golden/reconstructed``)."""
    (path,) = (stellar_data / "stellar-etl-golden" / "reconstructed").glob(f"*--{seq}.reconstructed.xdr")
    return load(stellar_data, str(path.relative_to(stellar_data)))


def lighthorizon(stellar_data: Path, first: int, last: int) -> list[bytes]:
    """Testnet ledgers ``first..last`` as ``LedgerCloseMeta`` XDR (each light-horizon file: a 4-byte
    ``SerializedLedgerCloseMeta`` discriminant, then the ``LedgerCloseMeta``)."""
    base = stellar_data / "stellar-go-lighthorizon" / "ledgers"
    return [(base / str(seq)).read_bytes()[4:] for seq in range(first, last + 1)]
