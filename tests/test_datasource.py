"""LedgerRangeDatasource: read tasks planned from the range and aligned to lake objects; Arrow blocks of raw ledgers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.datasource import EST_BYTES_PER_LEDGER, RAW_LEDGER_SCHEMA, LedgerRangeDatasource, plan_chunks
from conftest import PUBNET

FIRST, LAST = 63092982, 63092991  # 63092984 and 63092988 are multiples of 4 (and 63092984 of 8)


@pytest.fixture(scope="module")
def lakes(tmp_path_factory, wallet_ledgers) -> dict[int, LedgerLake]:
    """ledgers_per_file -> a lake of the ten wallet-backend ledgers."""
    out = {}
    for per_file in (1, 4):
        root = tmp_path_factory.mktemp(f"lake{per_file}")
        write_lake(wallet_ledgers.values(), str(root), LakeSchema(ledgers_per_file=per_file, files_per_partition=8), network_passphrase=PUBNET)
        out[per_file] = LedgerLake(str(root))
    return out


def test_plan_chunks_is_aligned_and_covers_the_range() -> None:
    assert plan_chunks(63092982, 63092991, 4) == [(63092982, 63092983), (63092984, 63092987), (63092988, 63092991)]
    assert plan_chunks(5, 5, 64) == [(5, 5)]
    assert plan_chunks(0, 127, 64) == [(0, 63), (64, 127)]


@pytest.mark.parametrize(
    "per_file, parallelism, per_task, ranges",
    [
        # From parallelism: the range's objects shared out into at most `parallelism` tasks.
        (1, 3, None, [(63092982, 63092985), (63092986, 63092989), (63092990, 63092991)]),
        (1, 200, None, [(s, s) for s in range(FIRST, LAST + 1)]),
        (1, 1, None, [(FIRST, LAST)]),
        (4, 2, None, [(63092982, 63092987), (63092988, 63092991)]),
        (4, 200, None, [(63092982, 63092983), (63092984, 63092987), (63092988, 63092991)]),
        # From ledgers_per_task: boundaries at its multiples (the runner's chunks), whatever the parallelism.
        (1, 1, 5, [(63092982, 63092984), (63092985, 63092989), (63092990, 63092991)]),
        (1, 8, 4, [(63092982, 63092983), (63092984, 63092987), (63092988, 63092991)]),
        # 4-ledger objects: 6 ledgers per task round up to 8 so that no object is read by two tasks.
        (4, 1, 6, [(63092982, 63092983), (63092984, 63092991)]),
    ],
)
def test_read_tasks_are_planned_from_the_range(lakes, per_file, parallelism, per_task, ranges) -> None:
    lake = lakes[per_file]
    lake.resolve(FIRST)
    ds = LedgerRangeDatasource(lake, FIRST, LAST, ledgers_per_task=per_task)
    assert ds.plan(parallelism) == ranges
    if per_file > 1:  # every task boundary is an object boundary
        assert all(s == FIRST or s % per_file == 0 for s, _ in ranges)
        assert all(e == LAST or (e + 1) % per_file == 0 for _, e in ranges)
    tasks = ds.get_read_tasks(parallelism)
    assert [t.metadata.num_rows for t in tasks] == [e - s + 1 for s, e in ranges]
    assert [t.metadata.size_bytes for t in tasks] == [(e - s + 1) * EST_BYTES_PER_LEDGER for s, e in ranges]


@pytest.mark.parametrize("per_file", [1, 4])
def test_read_tasks_yield_each_ledger_once_as_arrow(lakes, wallet_ledgers, per_file: int) -> None:
    lake = lakes[per_file]
    ds = LedgerRangeDatasource(lake, FIRST + 1, LAST, ledgers_per_task=4)
    blocks = [b for task in ds.get_read_tasks(1) for b in task()]
    assert all(isinstance(b, pa.Table) and b.schema == RAW_LEDGER_SCHEMA and b.num_rows <= 8 for b in blocks)
    table = pa.concat_tables(blocks)
    assert table.column("sequence").to_pylist() == list(range(FIRST + 1, LAST + 1))
    assert table.column("xdr").to_pylist() == [wallet_ledgers[s] for s in range(FIRST + 1, LAST + 1)]
    keys = table.column("key").to_pylist()
    assert keys[0] == f"{lake.root}/{lake.schema.key_for(FIRST + 1)}"
    assert len(set(keys)) == len(list(lake.schema.files_for_range(FIRST + 1, LAST)))


def test_size_estimate(lakes) -> None:
    assert LedgerRangeDatasource(lakes[1], FIRST, LAST).estimate_inmemory_data_size() == 10 * EST_BYTES_PER_LEDGER
    assert LedgerRangeDatasource(lakes[1], 5, 5, bytes_per_ledger=2048).estimate_inmemory_data_size() == 2048
    with pytest.raises(ValueError):
        LedgerRangeDatasource(lakes[1], 6, 5)


def test_ray_dataset_of_raw_ledgers(ray_cluster, lakes, wallet_ledgers) -> None:
    import ray.data

    ds = ray.data.read_datasource(LedgerRangeDatasource(lakes[4], FIRST, LAST), override_num_blocks=3)
    assert ds.schema().base_schema == RAW_LEDGER_SCHEMA
    rows = ds.take_all()
    assert sorted(r["sequence"] for r in rows) == list(range(FIRST, LAST + 1))  # each ledger exactly once
    assert {r["sequence"]: r["xdr"] for r in rows} == wallet_ledgers
