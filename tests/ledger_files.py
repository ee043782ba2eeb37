"""Decode single pubnet ledgers from the shared data set (stellar-etl golden inputs and loose files)."""

from __future__ import annotations

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
