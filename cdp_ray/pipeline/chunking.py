"""How a pipeline's ledger range is cut into chunks: the unit of work, of output files and of commits.

Chunk boundaries lie on a grid that depends only on the pipeline's configuration and the lake, never
on which ledgers a run happens to cover, so reruns, extended ranges and resumes cut the same cells.

* ``ledgers_per_task: N``: cells of N ledgers (rounded up to whole lake objects), aligned to multiples
  of N.
* ``ledgers_per_task: auto``: cell sizes follow the size of the ledgers. The range is divided into
  superblocks of ``2**16`` lake objects; each superblock's cell size is ``ledgers_per_file * 2**k``,
  the largest that keeps a chunk's lake objects under ``chunk_target_mb``, estimated from the sizes
  of a few objects sampled at fixed positions of the superblock. Early pubnet history (ledgers of a
  few kB) gets chunks of tens of thousands of ledgers, protocol-26 ledgers (100-150 kB compressed) a
  few hundred. Cell sizes are powers of two times the batch size and aligned to their size, so cells
  of different superblocks never straddle each other.

Nothing here lists the lake or materializes chunks: counting is arithmetic per superblock and chunks
are generated lazily, so planning 60 million ledgers costs what planning one thousand does, plus a
few object-size probes per 65,536 objects for ``auto``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Protocol

from cdp_ray.lake import LedgerLake

SUPERBLOCK_OBJECTS = 1 << 16
SAMPLES_PER_SUPERBLOCK = 4
MIN_CELL_LEDGERS = 16


class Grid(Protocol):
    def cell_size(self, seq: int) -> int:
        """Ledgers per cell around ``seq``."""

    def span(self, seq: int) -> int:
        """Ledgers from ``seq``'s region start over which :meth:`cell_size` is constant (a power of two)."""


def plan_chunks(start: int, end: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, end]`` split at multiples of ``chunk`` (small ranges only: the list is materialized)."""
    return list(iter_cells(FixedGrid(chunk), start, end))


class FixedGrid:
    """Cells of ``size`` ledgers aligned to multiples of ``size``."""

    def __init__(self, size: int):
        self.size = size

    def cell_size(self, seq: int) -> int:
        return self.size

    def span(self, seq: int) -> int:
        return 1 << 62

    def describe(self) -> str:
        return f"{self.size} ledgers per chunk"


class AutoGrid:
    """Cells sized by bytes: per superblock, the largest ``ledgers_per_file * 2**k`` ledgers whose lake
    objects stay under ``target_bytes`` (see the module docstring).

    ``cap`` bounds the cell size (a short range on a large cluster still gets a chunk per worker).
    Where none of a superblock's sampled objects exists (a lake holding part of it), objects of the part
    inside ``within`` (the run's range) are probed instead; where none of those exists either, cells
    are ``fallback`` ledgers.
    """

    def __init__(self, lake: LedgerLake, target_bytes: int, *, cap: int | None = None, fallback: int = 64,
                 within: tuple[int, int] | None = None):
        self.lake = lake
        self.per_file = lake.schema.ledgers_per_file if lake.layout == "lake" else 1
        self.block = self.per_file * SUPERBLOCK_OBJECTS
        self.target_bytes = target_bytes
        self.floor = self.per_file * max(1, _pow2_ceil(-(-MIN_CELL_LEDGERS // self.per_file)))
        self.cap = max(self.floor, cap) if cap else self.block
        self.fallback = self._clamp(fallback)
        self.within = within
        self._sizes: dict[int, int] = {}
        self.sampled: dict[int, tuple[int, int]] = {}  # superblock -> (objects found, objects probed)

    def _clamp(self, ledgers: int) -> int:
        cells = max(1, ledgers // self.per_file)
        return min(max(self.per_file * _pow2_floor(cells), self.floor), self.cap, self.block)

    def _probe_points(self, block: int) -> list[int]:
        first = block * self.block
        step = self.block // SAMPLES_PER_SUPERBLOCK
        return [self.lake.schema.file_start(first + step * i + step // 2) for i in range(SAMPLES_PER_SUPERBLOCK)]

    def _measure(self, block: int) -> int:
        sizes = [self.lake.object_size(seq) for seq in self._probe_points(block)]
        found = [s for s in sizes if s is not None]
        if not found and self.within is not None:  # a lake holding only part of the superblock: probe the part run
            lo, hi = max(self.within[0], block * self.block), min(self.within[1], (block + 1) * self.block - 1)
            if lo <= hi:
                points = sorted({self.lake.schema.file_start(lo + (hi - lo) * (2 * i + 1) // 8) for i in range(4)})
                more = [self.lake.object_size(seq) for seq in points]
                sizes += more
                found = [s for s in more if s is not None]
        self.sampled[block] = (len(found), len(sizes))
        if not found:
            return self.fallback
        per_ledger = sum(found) / (len(found) * self.per_file)
        return self._clamp(int(self.target_bytes / max(per_ledger, 1.0)))

    def prefetch(self, start: int, end: int, threads: int = 32) -> None:
        """Sample every superblock of ``[start, end]`` at once, ``threads`` probes in flight (dry runs)."""
        blocks = [b for b in range(start // self.block, end // self.block + 1) if b not in self._sizes]
        if self.lake.protocol == "file":
            threads = 1
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for b, size in zip(blocks, pool.map(self._measure, blocks)):
                self._sizes[b] = size

    def cell_size(self, seq: int) -> int:
        block = seq // self.block
        if block not in self._sizes:
            self._sizes[block] = self._measure(block)
        return self._sizes[block]

    def span(self, seq: int) -> int:
        return self.block - seq % self.block

    def describe(self) -> str:
        return f"auto: chunks of about {self.target_bytes / 2**20:g} MiB of lake objects"


def iter_cells(grid: Grid, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The grid's cells intersected with ``[start, end]``, in order, lazily."""
    s = start
    while s <= end:
        c = grid.cell_size(s)
        e = min(end, (s // c + 1) * c - 1)
        yield s, e
        s = e + 1


def count_cells(grid: Grid, start: int, end: int) -> int:
    """``len(list(iter_cells(grid, start, end)))``, computed per region of constant cell size."""
    n, s = 0, start
    while s <= end:
        c = grid.cell_size(s)
        region_end = min(end, s + grid.span(s) - 1)
        n += region_end // c - s // c + 1
        s = region_end + 1
    return n


def parallelism_cap(start: int, end: int, workers: int) -> int:
    """The largest power of two that still gives each worker two chunks of ``[start, end]``."""
    return _pow2_floor(max(1, (end - start + 1) // (2 * max(1, workers))))


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(1, n) - 1).bit_length()
