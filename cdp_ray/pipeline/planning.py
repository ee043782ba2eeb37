"""A run's plan: which ledgers are left to do, cut into chunks lazily, and what a dry run reports.

Nothing here grows with the range: what is done and left are interval lists (their length is the
number of committed ranges), chunk counts are arithmetic (:mod:`cdp_ray.pipeline.chunking`), and
chunks are generated one at a time as workers take them.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from cdp_ray.lake import LedgerLake
from cdp_ray.pipeline import intervals
from cdp_ray.pipeline.chunking import AutoGrid, FixedGrid, Grid, count_cells, iter_cells, parallelism_cap
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.sinks.base import RangeRecord
from cdp_ray.pipeline.memory import peak_rss_mb


def make_grid(cfg: PipelineConfig, lake: LedgerLake, workers: int = 1) -> Grid:
    """The pipeline's chunk grid over ``lake`` (``workers`` only caps ``auto`` cells of short ranges)."""
    per_file = lake.schema.ledgers_per_file if lake.layout == "lake" else 1
    lpt = cfg.options.ledgers_per_task
    if lpt != "auto":
        return FixedGrid(-(-lpt // per_file) * per_file)
    if lake.layout != "lake":
        return FixedGrid(64)
    src = cfg.source
    return AutoGrid(lake, int(cfg.options.chunk_target_mb * 2**20), cap=parallelism_cap(src.start, src.end, workers),
                    within=(src.start, src.end))


@dataclass(frozen=True)
class Chunk:
    """A unit of work: ledgers ``[start, end]``, and per sink the committed ranges in its grid cells (their
    rows outside the chunk are carried into its commit); ``link`` asks the worker to check that ``start``
    chains to the ledger before it."""

    start: int
    end: int
    replaces: tuple[tuple[tuple[int, int], ...], ...] = ()
    link: bool = True


class _Committed:
    """One sink's committed ranges of the current config, sorted, for overlap queries."""

    def __init__(self, records: list[RangeRecord], config_hash: str):
        spans = sorted((r.start, r.end) for r in records if r.config_hash == config_hash)
        self.starts = [s for s, _ in spans]
        self.ends = [e for _, e in spans]
        self.reach = []  # running maximum of ends: overlap queries stay correct if ranges nest
        top = -1
        for e in self.ends:
            top = max(top, e)
            self.reach.append(top)

    def overlapping(self, start: int, end: int) -> tuple[tuple[int, int], ...]:
        i = bisect.bisect_left(self.reach, start)
        out = []
        while i < len(self.starts) and self.starts[i] <= end:
            if self.ends[i] >= start:
                out.append((self.starts[i], self.ends[i]))
            i += 1
        return tuple(out)


@dataclass
class RunPlan:
    """The ledgers a run must process (``todo``), the grid that cuts them, and the sinks' committed ranges."""

    cfg: PipelineConfig
    grid: Grid
    done: list[intervals.Interval]
    todo: list[intervals.Interval]
    committed: list[_Committed] = field(default_factory=list)

    @classmethod
    def build(cls, cfg: PipelineConfig, lake: LedgerLake, sink_records: list[list[RangeRecord]], config_hash: str, *,
              resume: bool, workers: int = 1) -> "RunPlan":
        src = cfg.source
        committed = [_Committed(rs, config_hash) for rs in sink_records]
        done: list[intervals.Interval] = []
        if sink_records:
            done = intervals.merge((s, e) for s, e in zip(committed[0].starts, committed[0].ends))
            for c in committed[1:]:
                done = intervals.intersect(done, intervals.merge(zip(c.starts, c.ends)))
        done = intervals.intersect(done, [(src.start, src.end)])
        todo = intervals.subtract((src.start, src.end), done) if resume else [(src.start, src.end)]
        return cls(cfg, make_grid(cfg, lake, workers), done, todo, committed)

    @property
    def ledgers(self) -> int:
        return intervals.size(self.todo)

    def chunk_count(self) -> int:
        return sum(count_cells(self.grid, s, e) for s, e in self.todo)

    def chunks(self) -> Iterator[Chunk]:
        """The chunks of ``todo`` in ledger order. A chunk overlapping a committed range that reaches into
        the next chunk absorbs that chunk, so no committed range is carried by two chunks at once."""
        pending: tuple[int, int] | None = None
        for s, e in (cell for span in self.todo for cell in iter_cells(self.grid, *span)):
            if pending is not None and pending[1] + 1 == s and self._reaches(pending, s):
                pending = (pending[0], e)
                continue
            if pending is not None:
                yield self._chunk(*pending)
            pending = (s, e)
        if pending is not None:
            yield self._chunk(*pending)

    def _reaches(self, chunk: tuple[int, int], seq: int) -> bool:
        return any(e >= seq for c in self.committed for _, e in c.overlapping(*chunk))

    def _chunk(self, start: int, end: int) -> Chunk:
        """A chunk replacing the committed ranges in its cells, so a cell completed by a later run (a range
        extended past a partial last chunk) ends up in one file again."""
        first, last = self.grid.cell_size(start), self.grid.cell_size(end)
        lo, hi = start // first * first, (end // last + 1) * last - 1
        return Chunk(start, end, tuple(c.overlapping(lo, hi) for c in self.committed))

    def describe(self, lake: LedgerLake | None = None) -> dict[str, Any]:
        """What a dry run prints: ledgers, chunks (total, committed, to run), the first and last chunk to
        run, and, given the lake, which part of the range it holds."""
        t0 = time.perf_counter()
        src = self.cfg.source
        if isinstance(self.grid, AutoGrid):
            self.grid.prefetch(src.start, src.end)
        total = count_cells(self.grid, src.start, src.end)
        to_run = self.chunk_count()
        doc: dict[str, Any] = {
            "pipeline": self.cfg.name,
            "range": [src.start, src.end],
            "ledgers": src.end - src.start + 1,
            "grid": self.grid.describe(),
            "chunks": total,
            "chunks_committed": total - to_run,
            "chunks_to_run": to_run,
            "ledgers_committed": intervals.size(self.done),
            "ledgers_to_run": self.ledgers,
            "first_chunk": None,
            "last_chunk": None,
        }
        if self.todo:
            doc["first_chunk"] = list(next(iter_cells(self.grid, *self.todo[0])))
            s, e = self.todo[-1]
            c = self.grid.cell_size(e)
            doc["last_chunk"] = [max(s, e // c * c), e]
        if isinstance(self.grid, AutoGrid) and self.grid.sampled:
            found = sum(f for f, _ in self.grid.sampled.values())
            probed = sum(n for _, n in self.grid.sampled.values())
            doc["size_samples"] = {"superblocks": len(self.grid.sampled), "objects_probed": probed, "objects_found": found}
        if lake is not None:
            doc["lake"] = lake_extent(lake, src.start, src.end)
        doc["planning_seconds"] = round(time.perf_counter() - t0, 3)
        doc["peak_rss_mb"] = peak_rss_mb()
        return doc


def lake_extent(lake: LedgerLake, start: int, end: int) -> dict[str, Any]:
    """Which part of ``[start, end]`` the lake holds, from a few object probes (binary search; a lake is
    assumed to hold one contiguous span: gaps inside it are found when they are read)."""
    if lake.layout != "lake":
        found = lake.available_range()
        if found is None:
            return {"holds": "unknown"}
        lo, hi = max(start, found[0]), min(end, found[1])
        return _extent_doc(start, end, (lo, hi) if lo <= hi else None, probes=0)
    probes = [0]

    def has(seq: int) -> bool:
        probes[0] += 1
        return lake.object_size(seq) is not None

    first_ok, last_ok = has(start), has(end)
    if first_ok and last_ok:
        return _extent_doc(start, end, (start, end), probes[0])
    if first_ok:  # the last present ledger: has(lo) and not has(hi)
        lo, hi = start, end
        while hi - lo > lake.schema.ledgers_per_file:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if has(mid) else (lo, mid)
        return _extent_doc(start, end, (start, lake.schema.file_start(hi) - 1), probes[0])
    if last_ok:  # the first present ledger: not has(lo) and has(hi)
        lo, hi = start, end
        while hi - lo > lake.schema.ledgers_per_file:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if has(mid) else (mid, hi)
        return _extent_doc(start, end, (max(start, lake.schema.file_start(hi)), end), probes[0])
    return _extent_doc(start, end, None, probes[0])


def _extent_doc(start: int, end: int, held: tuple[int, int] | None, probes: int) -> dict[str, Any]:
    if held is None:
        return {"holds": "none", "first_found": None, "last_found": None, "probes": probes,
                "message": f"the lake holds neither ledger {start} nor ledger {end}"}
    whole = held == (start, end)
    doc = {"holds": "all" if whole else "part", "first_found": held[0], "last_found": held[1], "probes": probes}
    if not whole:
        doc["message"] = f"the lake holds ledgers {held[0]}-{held[1]} of {start}-{end}"
    return doc

