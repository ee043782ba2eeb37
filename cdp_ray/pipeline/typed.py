"""Typed access to the JSON columns: operation ``details``, contract event topics and data, exact amounts.

The tables keep stellar-etl's column types: ``operations.details`` is a JSON object whose value types
vary by operation (``amount`` is a number for ``manage_buy_offer`` and a 7-place string for
``path_payment_strict_send``), and event ``topics_decoded``/``data_decoded`` are ScVal JSON. These
polars expressions read them with one type per key::

    ops.with_columns(cdp_ray.detail("amount"), cdp_ray.detail("offer_id"))   # Decimal(38, 7), Int64
    cdp_ray.details(ops, "amount", "asset_code")                               # the same, on a frame
    tt.with_columns(cdp_ray.amount())          # token_transfers.amount_raw -> exact Decimal(38, 7) units
    cdp_ray.events(events)                      # topic_0..topic_3, data_type, data_value, data_amount

Amounts in ``details`` are stellar-etl's float64 units; read as ``Decimal(38, 7)`` they are exact to the
stroop below 10^8 units (15 significant digits: the float's shortest text is the amount itself). For
exact amounts at any size use integer columns: ``token_transfers.amount_raw`` (with :func:`amount`),
``payments.amount`` (stroops). A value that does not fit its type raises, it is never nulled.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

import polars as pl

AMOUNT = pl.Decimal(38, 7)
"""Units of a Stellar amount: 7 decimal places (1 stroop = 0.0000001)."""

_AMOUNT_KEYS = (
    "amount", "starting_balance", "source_amount", "source_max", "destination_min", "limit", "shares",
    *(f"reserve_{s}_{k}_amount" for s in "ab" for k in ("max", "deposit", "min", "withdraw")),
)
_INT_KEYS = (
    "offer_id", "asset_id", "buying_asset_id", "selling_asset_id", "source_asset_id", "reserve_a_asset_id",
    "reserve_b_asset_id", "master_key_weight", "low_threshold", "med_threshold", "high_threshold", "signer_weight",
    "extend_to",
)
_FLOAT_KEYS = ("price", "min_price", "max_price")

DETAIL_TYPES: dict[str, pl.DataType] = {
    **{k: AMOUNT for k in _AMOUNT_KEYS},
    **{k: pl.Int64() for k in _INT_KEYS},
    **{k: pl.Float64() for k in _FLOAT_KEYS},
}
"""The type of each known ``details`` key; any other key reads as String (objects and lists as JSON text)."""

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def detail(key: str, dtype: Any = None, *, column: str = "details") -> pl.Expr:
    """Top-level ``key`` of the JSON ``column`` as a column named ``key`` of one type (``dtype``, else
    :data:`DETAIL_TYPES`, else String); null where the row has no such key."""
    return pl.col(column).str.json_path_match(f"$.{key}").cast(dtype or DETAIL_TYPES.get(key, pl.String())).alias(key)


def _polars(frame: Any) -> pl.DataFrame | pl.LazyFrame:
    if isinstance(frame, (pl.DataFrame, pl.LazyFrame)):
        return frame
    return pl.from_arrow(frame)  # a pyarrow Table


def details(frame: Any, *keys: str, column: str = "details", dtypes: dict[str, Any] | None = None):
    """``frame`` (polars DataFrame or LazyFrame, or a pyarrow Table) with one typed column per ``key`` of
    ``column`` (see :func:`detail`; ``dtypes`` overrides a key's type)."""
    return _polars(frame).with_columns(detail(k, (dtypes or {}).get(k), column=column) for k in keys)


def amount(column: str = "amount_raw", *, scale: int = 7, name: str | None = None) -> pl.Expr:
    """An integer-string ``column`` (``token_transfers.amount_raw``: the token's smallest unit) as an exact
    ``Decimal(38, scale)`` of units, named ``name`` (default: ``column`` without ``_raw``)."""
    raw = pl.col(column).cast(pl.Decimal(38, 0))
    return (raw * pl.lit(Decimal(1).scaleb(-scale), pl.Decimal(38, scale))).cast(pl.Decimal(38, scale)).alias(
        name or column.removesuffix("_raw"))


def topic(i: int, *, column: str = "topics_decoded") -> pl.Expr:
    """Topic ``i`` of a contract event as String: a symbol, string or address as itself, a number as its
    decimal text, anything else as its ScVal JSON; named ``topic_<i>``, null where the event has fewer."""
    return pl.col(column).str.json_path_match(f"$[{i}].*").alias(f"topic_{i}")


_INTEGER = ("i32", "u32", "i64", "u64", "i128", "u128", "i256", "u256")


def events(frame: Any, *, topics: int = 4, column: str = "data_decoded"):
    """Contract events with ``topic_0`` .. ``topic_<topics-1>`` (:func:`topic`), ``data_type`` (the data's
    ScVal type, e.g. ``i128``, ``void``), ``data_value`` (String, as :func:`topic`) and ``data_amount``: integer data
    as an exact ``Decimal(38, 0)`` in the token's smallest unit (null for other types)."""
    kind = pl.coalesce(pl.col(column).str.extract(r'^\{"([a-z0-9_]+)"', 1), pl.col(column).str.extract(r'^"([a-z]+)"$', 1))
    value = pl.col(column).str.json_path_match("$.*")
    return _polars(frame).with_columns(
        *(topic(i) for i in range(topics)),
        kind.alias("data_type"),
        value.alias("data_value"),
        pl.when(kind.is_in(_INTEGER)).then(value).cast(pl.Decimal(38, 0)).alias("data_amount"),
    )
