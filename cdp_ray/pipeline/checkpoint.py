"""Checkpoints: which ledger ranges a pipeline has committed, read back from its sinks.

Every sink records each range it commits in the same commit as the rows (Postgres: a row in
``cdp_ray_ranges`` in the load transaction; Parquet: a manifest written after the files). A range is
done when every sink of the pipeline holds a record for it with the pipeline's current config
hash, so ``--resume`` never skips a range one sink is missing.

The config hash covers what decides the output: processors and their options, their declared
schemas, the pipeline's ``where`` filter, the network, the chunk grid (``ledgers_per_task``, and
``chunk_target_mb`` when it is ``auto``) and each sink's layout options. The ledger range, worker
count, retries and credentials are not part of it: a run may extend a range or change its
parallelism and still resume.

What is done is computed with interval arithmetic over the committed ranges
(:mod:`cdp_ray.pipeline.intervals`): its cost grows with the number of ranges, not of ledgers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cdp_ray.errors import ConfigError
from cdp_ray.pipeline import intervals
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.processors.base import get_processor
from cdp_ray.sinks.base import DeadLetter, RangeRecord, Sink


class CheckpointMismatchError(ConfigError):
    """The pipeline's config differs from the one that wrote its existing checkpoint."""


def config_fingerprint(cfg: PipelineConfig) -> dict[str, Any]:
    """The parts of ``cfg`` that change what a run writes."""
    procs = []
    for step in cfg.processors:
        p = get_processor(step.name)
        procs.append(
            {
                "name": p.name,
                "config": p.parse_config(step.config).model_dump(mode="json"),
                "schema": [[f.name, str(f.type), f.nullable] for f in p.schema],
            }
        )
    doc = {
        "processors": procs,
        "network": cfg.source.network_passphrase,
        "ledgers_per_task": cfg.options.ledgers_per_task,
        **({"chunk_target_mb": cfg.options.chunk_target_mb} if cfg.options.ledgers_per_task == "auto" else {}),
        "sinks": sorted((s.type, json.dumps(s.fingerprint(), sort_keys=True)) for s in cfg.sinks),
    }
    if cfg.where is not None and not cfg.where.empty:
        # Only when set: pipelines without a filter keep the hashes of checkpoints written before it existed.
        doc["where"] = cfg.where.model_dump(mode="json")
    return doc


def config_hash(cfg: PipelineConfig) -> str:
    """A short, stable hash of :func:`config_fingerprint`."""
    doc = json.dumps(config_fingerprint(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


@dataclass
class SinkCheckpoint:
    """One sink's view of a pipeline's checkpoint."""

    sink: str
    records: list[RangeRecord]
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def stale(self, current_hash: str) -> list[RangeRecord]:
        return [r for r in self.records if r.config_hash != current_hash]

    def to_json(self, current_hash: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "sink": self.sink,
            "ranges": len(self.records),
            "ledgers": sum(r.end - r.start + 1 for r in self.records),
            "first": min((r.start for r in self.records), default=None),
            "last": max((r.end for r in self.records), default=None),
            "config_hashes": sorted({r.config_hash for r in self.records}),
            "dead_letters": len(self.dead_letters),
        }
        if current_hash is not None:
            doc["stale"] = len(self.stale(current_hash))
        return doc


class Checkpoint:
    """A pipeline's checkpoint across all of its sinks."""

    def __init__(self, pipeline: str, sinks: list[Sink], current_hash: str):
        self.pipeline = pipeline
        self.sinks = sinks
        self.hash = current_hash
        self.views = [
            SinkCheckpoint(s.config.describe(), s.committed(pipeline), s.dead_letters(pipeline)) for s in sinks
        ]

    @classmethod
    def load(cls, cfg: PipelineConfig, sinks: list[Sink]) -> "Checkpoint":
        return cls(cfg.name, sinks, config_hash(cfg))

    def covered(self, view: "SinkCheckpoint") -> list[intervals.Interval]:
        """Ledgers ``view``'s sink committed with the current config, as sorted disjoint intervals."""
        return intervals.merge((r.start, r.end) for r in view.records if r.config_hash == self.hash)

    def done(self) -> list[intervals.Interval]:
        """Ledgers committed with the current config hash in every sink, as sorted disjoint intervals."""
        if not self.views:
            return []
        out = self.covered(self.views[0])
        for v in self.views[1:]:
            out = intervals.intersect(out, self.covered(v))
        return out

    def stale(self) -> list[tuple[Sink, list[RangeRecord]]]:
        """Per sink, records written with another config."""
        return [(s, v.stale(self.hash)) for s, v in zip(self.sinks, self.views) if v.stale(self.hash)]

    def dead_letter_ranges(self) -> frozenset[tuple[int, int]]:
        return frozenset((d.start, d.end) for v in self.views for d in v.dead_letters)

    def check(self, *, force: bool, start: int, end: int) -> int:
        """Refuse a changed config unless ``force``; with it, discard stale ranges overlapping ``[start, end]``.

        Returns the number of stale ranges discarded. Stale ranges outside the run's range are kept
        (``cdp-ray checkpoint show`` lists them) and still block a later run without ``--force``.
        """
        stale = self.stale()
        if not stale:
            return 0
        if not force:
            ranges = sorted({(r.start, r.end) for _, rs in stale for r in rs})
            hashes = sorted({r.config_hash for _, rs in stale for r in rs})
            where = ", ".join(s.config.describe() for s, _ in stale)
            raise CheckpointMismatchError(
                f"pipeline {self.pipeline!r} has {len(ranges)} range(s) committed by another config "
                f"(hash {', '.join(hashes)}; now {self.hash}) in {where}, e.g. ledgers {ranges[0][0]}-{ranges[0][1]}",
                hint="rerun with --force to rewrite the ranges of this run with the new config (ranges of the old "
                "config outside the run stay until rewritten), or run the new config as another pipeline writing "
                "to another output (a sink's tables belong to one pipeline)",
            )
        discarded = 0
        for sink, records in stale:
            overlap = [r for r in records if r.start <= end and r.end >= start]
            if overlap:
                sink.discard(self.pipeline, overlap)
                discarded += len(overlap)
        return discarded

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "config_hash": self.hash,
            "done": len(self.done()),
            "sinks": [v.to_json(self.hash) for v in self.views],
        }
