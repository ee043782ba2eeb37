"""Typed reads of the JSON columns: one type per `details` key, exact amounts, event topics and data."""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
import pytest

import cdp_ray
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE


@pytest.fixture(scope="module")
def tables() -> dict[str, pl.DataFrame]:
    return cdp_ray.load(["operations", "payments", "token_transfers", "contract_events"], str(SAMPLE_LAKE), *SAMPLE_RANGE,
                        output="polars")


def test_details_give_one_type_per_key(tables) -> None:
    ops = tables["operations"]
    raw = {t: {type(json.loads(d).get("amount")).__name__ for d in g["details"]}
           for (t,), g in ops.group_by("type_string")}
    assert raw["manage_buy_offer"] <= {"float", "int"} and {"str", "float"} <= raw["path_payment_strict_send"]  # stellar-etl's
    typed = cdp_ray.details(ops, "amount", "offer_id", "price", "asset_code", "path")
    assert typed.schema["amount"] == pl.Decimal(38, 7) and typed.schema["offer_id"] == pl.Int64
    assert typed.schema["price"] == pl.Float64 and typed.schema["asset_code"] == typed.schema["path"] == pl.String
    lazy = cdp_ray.details(ops.lazy(), "amount").collect()
    assert lazy["amount"].equals(typed["amount"])
    arrow = cdp_ray.details(ops.to_arrow(), "amount")
    assert arrow["amount"].equals(typed["amount"])
    first = json.loads(ops.filter(pl.col("type_string") == "manage_buy_offer")["details"][0])
    row = typed.filter(pl.col("type_string") == "manage_buy_offer").row(0, named=True)
    assert (row["offer_id"], row["amount"]) == (first["offer_id"], Decimal(str(first["amount"])))


def test_detail_amounts_are_exact_to_the_stroop(tables) -> None:
    """Checked against the payments table's integer stroops, operation by operation."""
    ops = tables["operations"].with_columns(cdp_ray.detail("amount"), cdp_ray.detail("source_amount"))
    pays = tables["payments"].filter(pl.col("successful"))
    joined = pays.join(ops, left_on="operation_id", right_on="id", suffix="_details")
    assert joined.height == pays.height > 1000
    assert set(joined["operation_type"]) >= {"payment", "path_payment_strict_send", "path_payment_strict_receive"}
    scaled = joined.select((pl.col("amount_details") * 10**7).cast(pl.Int64).alias("stroops"), "amount")
    assert scaled["stroops"].to_list() == scaled["amount"].to_list()
    total = joined["amount_details"].sum()
    assert total == Decimal(sum(joined["amount"].to_list())).scaleb(-7)


def test_amount_raw_in_one_call(tables) -> None:
    tt = tables["token_transfers"]
    exact = tt.select(cdp_ray.amount())["amount"]
    assert exact.dtype == pl.Decimal(38, 7)
    assert exact.to_list() == [Decimal(int(r)).scaleb(-7) for r in tt["amount_raw"]]
    assert exact.sum() == Decimal(sum(int(r) for r in tt["amount_raw"])).scaleb(-7)
    huge = pl.DataFrame({"amount_raw": ["-1", "1234567890123456789012345678901"]}).select(cdp_ray.amount(scale=0, name="x"))
    assert huge["x"].to_list() == [Decimal(-1), Decimal("1234567890123456789012345678901")]
    with pytest.raises(pl.exceptions.InvalidOperationError):  # does not fit: raises, never null
        pl.DataFrame({"amount_raw": ["170141183460469231731687303715884105727"]}).select(cdp_ray.amount())


def test_event_topics_and_data(tables) -> None:
    ev = cdp_ray.events(tables["contract_events"])
    for row in ev.sample(200, seed=1).iter_rows(named=True):
        topics = json.loads(row["topics_decoded"])
        for i in range(4):
            want = None if i >= len(topics) else next(iter(topics[i].values()))
            assert row[f"topic_{i}"] == (want if isinstance(want, str) or want is None else json.dumps(want, separators=(",", ":"))), row
        data = json.loads(row["data_decoded"])
        kind = data if isinstance(data, str) else next(iter(data))
        assert row["data_type"] == kind
        if kind in ("i128", "u128", "i64", "u64"):
            assert row["data_amount"] == Decimal(int(data[kind]))
        else:
            assert row["data_amount"] is None
    transfers = ev.filter(pl.col("topic_0") == "transfer")
    assert transfers.height > 0 and transfers["data_amount"].null_count() < transfers.height
