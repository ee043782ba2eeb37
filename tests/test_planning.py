"""Planning at full-history scale: interval arithmetic, the chunk grid (fixed and sized by bytes), lazy
chunk generation with committed ranges to replace, and dry runs over 60 million ledgers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.pipeline import intervals
from cdp_ray.pipeline.chunking import AutoGrid, FixedGrid, count_cells, iter_cells, parallelism_cap
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.planning import Chunk, RunPlan, lake_extent
from cdp_ray.sample import SAMPLE_LAKE
from cdp_ray.sinks.base import RangeRecord


def test_interval_arithmetic_matches_sets() -> None:
    rng = random.Random(7)
    for _ in range(200):
        spans = [(a, a + rng.randint(0, 9)) for a in (rng.randint(0, 100) for _ in range(rng.randint(0, 8)))]
        other = [(a, a + rng.randint(0, 9)) for a in (rng.randint(0, 100) for _ in range(rng.randint(0, 8)))]
        sa = {x for s, e in spans for x in range(s, e + 1)}
        sb = {x for s, e in other for x in range(s, e + 1)}
        ma, mb = intervals.merge(spans), intervals.merge(other)
        assert {x for s, e in ma for x in range(s, e + 1)} == sa
        assert all(ma[i][1] + 1 < ma[i + 1][0] for i in range(len(ma) - 1)), "merged intervals are disjoint, not adjacent"
        assert {x for s, e in intervals.intersect(ma, mb) for x in range(s, e + 1)} == sa & sb
        left = intervals.subtract((10, 90), ma)
        assert {x for s, e in left for x in range(s, e + 1)} == set(range(10, 91)) - sa
        assert intervals.size(left) == len(set(range(10, 91)) - sa)


class _SizedLake(LedgerLake):
    """A lake whose object sizes follow a function of the ledger (no files): eras of history."""

    def __init__(self, size_of, missing_from: int | None = None):
        super().__init__("/nonexistent-lake", schema=LakeSchema(), layout="lake")
        self.size_of, self.missing_from, self.probes = size_of, missing_from, 0

    def object_size(self, seq: int) -> int | None:
        self.probes += 1
        if self.missing_from is not None and seq >= self.missing_from:
            return None
        return self.size_of(seq)


def _era(seq: int) -> int:
    """Early ledgers of 2 kB, later ones of 125 kB (protocol 26 is 100-160 kB compressed)."""
    return 2_000 if seq < 1 << 20 else 125_000


def test_auto_grid_sizes_chunks_by_bytes_and_nests_them() -> None:
    grid = AutoGrid(_SizedLake(_era), 32 * 2**20)
    assert grid.cell_size(5) == 16384  # 32 MiB / 2 kB, rounded down to a power of two
    assert grid.cell_size((1 << 20) + 5) == 256  # 32 MiB / 125 kB
    cells = list(iter_cells(grid, 1_000_000, 1_200_000))
    assert cells[0] == (1_000_000, 1_015_807) and cells[-1] == (1_199_872, 1_200_000)
    assert all(a[1] + 1 == b[0] for a, b in zip(cells, cells[1:])), "cells tile the range"
    for s, e in cells:
        c = grid.cell_size(s)
        assert e - s + 1 <= c and s // c == e // c, "a cell never straddles its grid line"
    assert count_cells(grid, 1_000_000, 1_200_000) == len(cells)
    assert count_cells(grid, 2, 60_000_001) == sum(1 for _ in iter_cells(grid, 2, 60_000_001))


def test_auto_grid_cap_floor_and_missing_objects() -> None:
    capped = AutoGrid(_SizedLake(_era), 32 * 2**20, cap=parallelism_cap(0, 999, 16))
    assert parallelism_cap(0, 999, 16) == 16 and capped.cell_size(0) == 16
    tiny = AutoGrid(_SizedLake(lambda s: 10**9), 32 * 2**20)
    assert tiny.cell_size(0) == 16, "never below 16 ledgers"
    lake = _SizedLake(_era, missing_from=1 << 16)
    gone = AutoGrid(lake, 32 * 2**20)
    assert gone.cell_size(1 << 16) == 64 and gone.sampled[1] == (0, 4)
    assert lake.probes == 4, "four probes per superblock of 65,536 objects"


def _cfg(start: int, end: int, lpt="auto") -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "plan", "source": {"uri": str(SAMPLE_LAKE), "start": start, "end": end},
        "processors": ["ledgers"], "options": {"ledgers_per_task": lpt},
    })


def _records(spans, h="h") -> list[RangeRecord]:
    return [RangeRecord("plan", s, e, h) for s, e in spans]


def test_resume_plans_the_holes_and_replaced_ranges() -> None:
    lake = LedgerLake(str(SAMPLE_LAKE))
    cfg = _cfg(100, 299, lpt=64)
    parquet = _records([(100, 127), (192, 255), (260, 270)])
    pg = _records([(100, 127), (192, 255)]) + _records([(256, 299)], h="old")
    plan = RunPlan.build(cfg, lake, [parquet, pg], "h", resume=True)
    assert plan.done == [(100, 127), (192, 255)], "done in every sink with the current config"
    assert plan.todo == [(128, 191), (256, 299)]
    chunks = list(plan.chunks())
    assert [(c.start, c.end) for c in chunks] == [(128, 191), (256, 299)]
    assert chunks[1].replaces == (((260, 270),), ()), "the Parquet range inside the chunk is replaced"
    assert plan.chunk_count() == 2 and plan.ledgers == 108
    everything = RunPlan.build(cfg, lake, [parquet, pg], "h", resume=False)
    assert [(c.start, c.end) for c in everything.chunks()] == [(100, 127), (128, 191), (192, 255), (256, 299)]


def test_a_committed_range_spanning_cells_is_carried_by_one_chunk() -> None:
    """A range committed with a coarser grid overlaps two cells: they become one chunk, so two workers
    never carry (and duplicate) its rows."""
    plan = RunPlan.build(_cfg(64, 319, lpt=64), LedgerLake(str(SAMPLE_LAKE)), [_records([(96, 159)])], "h", resume=False)
    assert [(c.start, c.end, c.replaces) for c in plan.chunks()] == [
        (64, 191, (((96, 159),),)), (192, 255, ((),)), (256, 319, ((),))]


def test_resume_over_100000_committed_ranges() -> None:
    records = _records([(64 * i, 64 * i + 63) for i in range(1, 100_001) if i % 1000])
    plan = RunPlan.build(_cfg(64, 64 * 100_001 - 1, lpt=64), LedgerLake(str(SAMPLE_LAKE)), [records], "h", resume=True)
    assert len(plan.todo) == 100 and plan.ledgers == 100 * 64
    assert plan.chunk_count() == 100
    first = next(plan.chunks())
    assert (first.start, first.end, first.replaces) == (64_000, 64_063, ((),))


def test_lake_extent_finds_what_the_lake_holds(tmp_path) -> None:
    lake = _SizedLake(_era, missing_from=1_234_567)
    found = lake_extent(lake, 1_000_000, 2_000_000)
    assert {k: v for k, v in found.items() if k != "probes"} == {
        "holds": "part", "first_found": 1_000_000, "last_found": 1_234_566,
        "message": "the lake holds ledgers 1000000-1234566 of 1000000-2000000"}
    assert found["probes"] <= 22, "a binary search, not a scan"
    assert lake_extent(lake, 1_000_000, 1_100_000)["holds"] == "all"
    assert lake_extent(LedgerLake(str(SAMPLE_LAKE)), 63092000, 63092985)["first_found"] == 63092982


def test_dry_run_of_60_million_ledgers(tmp_path: Path) -> None:
    spec = f"lake://{SAMPLE_LAKE}?start=2&end=60000001 | ledgers | transactions | parquet://{tmp_path / 'out'}"
    res = CliRunner().invoke(app, ["run", spec, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert (doc["ledgers"], doc["chunks_committed"], doc["first_chunk"]) == (60_000_000, 0, [2, 63])
    assert doc["chunks"] == doc["chunks_to_run"] == 937_501, "64-ledger chunks where no object size could be read"
    assert doc["size_samples"] == {"superblocks": 916, "objects_probed": 8 * 916, "objects_found": 0}, "4 + 4 in range"
    assert doc["lake"]["holds"] == "none" and "neither ledger 2 nor ledger 60000001" in doc["lake"]["message"]
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    text = CliRunner().invoke(app, ["run", f"lake://{SAMPLE_LAKE}?start=63092000&end=63092991 | ledgers | parquet://{tmp_path}/o",
                                    "--dry-run"]).stdout
    assert "the lake holds ledgers 63092982-63092991 of 63092000-63092991" in text


def test_chunk_is_a_plain_value() -> None:
    assert Chunk(1, 2) == Chunk(1, 2, (), True) and FixedGrid(8).cell_size(123) == 8
