"""``assets``: assets seen in payment and manage-sell-offer operations (stellar-etl ``history_assets``)."""

from __future__ import annotations

import pyarrow as pa
from stellar_sdk import xdr

from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import TIMESTAMP, asset_id, asset_parts
from cdp_ray.processors.filters import FilterConfig, apply_where
from cdp_ray.xdr import Ledger

ASSETS_SCHEMA = pa.schema(
    [
        col(
            "asset_id", pa.int64(), "FarmHash Fingerprint64 of code + issuer + type, as a signed int64", nullable=False
        ),
        col("asset_code", pa.string(), "asset code, empty for the native asset", nullable=False),
        col("asset_issuer", pa.string(), "G... issuer, empty for the native asset", nullable=False),
        col("asset_type", pa.string(), "native, credit_alphanum4 or credit_alphanum12", nullable=False),
        col("ledger_sequence", pa.uint32(), "ledger in which the run first saw the asset", nullable=False),
        col("closed_at", TIMESTAMP, "close time of that ledger (UTC)", nullable=False),
    ]
)

_OT = xdr.OperationType


def _envelope_operations(env: xdr.TransactionEnvelope) -> list:
    if env.fee_bump is not None:
        return env.fee_bump.tx.inner_tx.v1.tx.operations
    return (env.v1 or env.v0).tx.operations


def ledger_assets(ledger: Ledger, seen: set[int] | None = None) -> list[dict]:
    """Assets of the ledger's payment and manage-sell-offer operations (failed transactions included, in
    transaction-set order), skipping asset ids already in ``seen`` (which is updated)."""
    seen = set() if seen is None else seen
    rows = []
    for env in ledger.envelopes:
        for op in _envelope_operations(env):
            body = op.body
            if body.type == _OT.PAYMENT:
                asset = body.payment_op.asset
            elif body.type == _OT.MANAGE_SELL_OFFER:
                asset = body.manage_sell_offer_op.selling
            else:
                continue
            kind, code, issuer = asset_parts(asset)
            aid = asset_id(code, issuer, kind)
            if aid in seen:
                continue
            seen.add(aid)
            rows.append(
                {
                    "asset_id": aid,
                    "asset_code": code,
                    "asset_issuer": issuer,
                    "asset_type": kind,
                    "ledger_sequence": ledger.sequence,
                    "closed_at": ledger.closed_at,
                }
            )
    return rows


@processor(
    "assets",
    schema=ASSETS_SCHEMA,
    primary_key=("asset_id",),
    first_seen_by=("asset_id",),
    description="Distinct assets used by payment and manage-sell-offer operations (stellar-etl history_assets): "
    "code, issuer, type and stellar-etl's FarmHash asset_id. One row per asset for the whole run, at the first "
    "ledger that used it (stellar-etl export_assets): load() merges the chunks, PostgreSQL keeps the earliest "
    "row per asset_id, and Parquet files hold each chunk's first sightings, merged when read with cdp_ray.scan.",
    config=FilterConfig,
    tags=("core", "assets"),
)
def assets(batch: list[Ledger], config: FilterConfig) -> list[dict]:
    seen: set[int] = set()
    return [row for ledger in apply_where(batch, config) for row in ledger_assets(ledger, seen)]
