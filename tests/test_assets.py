"""``assets``: stellar-etl's golden for ledger 30820015 field by field, and de-duplication within a batch."""

from __future__ import annotations

import json

from cdp_ray.processors import get_processor
from cdp_ray.processors.assets import ledger_assets
from cdp_ray.processors.common import NATIVE_ASSET_ID

from ledger_files import reconstructed


def test_golden_one_ledger_every_field(stellar_data):
    table = get_processor("assets").process([reconstructed(stellar_data, 30820015)])
    ours = {r["asset_id"]: r for r in table.to_pylist()}
    golden = [
        json.loads(x)
        for x in (stellar_data / "stellar-etl-golden/assets/one_ledger_assets.golden").read_text().splitlines()
    ]
    assert len(golden) == 16 and len(ours) == 16
    for g in golden:
        row = ours[g["asset_id"]]
        assert set(g) == set(row)
        for column, expected in g.items():
            value = row[column].strftime("%Y-%m-%dT%H:%M:%SZ") if column == "closed_at" else row[column]
            assert value == expected, (g["asset_id"], column)
    native = ours[NATIVE_ASSET_ID]
    assert (native["asset_type"], native["asset_code"], native["asset_issuer"]) == ("native", "", "")


def test_first_sighting_kept_within_a_batch(stellar_data):
    ledgers = [reconstructed(stellar_data, s) for s in (30822015, 30822016, 30822017)]
    rows = get_processor("assets").process(ledgers).to_pylist()
    ids = [r["asset_id"] for r in rows]
    assert len(ids) == len(set(ids))
    per_ledger = [ledger_assets(lg) for lg in ledgers]
    assert set(ids) == {r["asset_id"] for rs in per_ledger for r in rs}
    first_seen: dict[int, int] = {}
    for rs in per_ledger:
        for r in rs:
            first_seen.setdefault(r["asset_id"], r["ledger_sequence"])
    assert {r["asset_id"]: r["ledger_sequence"] for r in rows} == first_seen
    # Each ledger on its own repeats the assets it shares with earlier ones.
    assert sum(len(rs) for rs in per_ledger) > len(rows)
