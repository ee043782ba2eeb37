"""Running pipelines: registration, heartbeats with per-component stats, Prometheus text and SSE.

A run accumulates its chunk results in :class:`RunStats` (in the control plane for in-process
runs, in the Ray job for submitted ones) and sends cumulative snapshots as heartbeats, so a lost
heartbeat loses no counts. :class:`StatsHub` keeps the latest snapshot of every pipeline, persists
it, and wakes event-stream readers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Literal

from pydantic import BaseModel, Field

from cdp_ray.control.estimate import Estimate, compare
from cdp_ray.control.secrets import redact
from cdp_ray.control.store import Store, now_iso
from cdp_ray.pipeline.config import PIPELINE_NAME, PipelineConfig

State = Literal["pending", "running", "succeeded", "failed"]
TERMINAL = ("succeeded", "failed")
LATENCY_WINDOW = 2048


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in [0, 1]) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[idx]


class RunStats:
    """Cumulative stats of one run, fed by ``run_pipeline``'s ``on_chunk`` rows."""

    def __init__(self, cfg: PipelineConfig):
        self.total = cfg.source.end - cfg.source.start + 1
        self.tables = [s.name for s in cfg.processors]
        self.sinks = [s.type for s in cfg.sinks]
        self.chunks = self.ledgers = self.xdr_bytes = self.bytes_written = self.errors = 0
        self.rows: dict[str, int] = {t: 0 for t in self.tables}
        self.latencies: list[float] = []
        self.quarantined: list[dict[str, Any]] = []
        self.cpu_seconds = 0.0
        self.started = time.time()
        self.last_ledger: int | None = None
        self._lock = threading.Lock()

    def add_chunk(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.chunks += 1
            self.ledgers += int(row.get("ledgers") or 0)
            self.xdr_bytes += int(row.get("xdr_bytes") or 0)
            self.bytes_written += int(row.get("bytes_written") or 0)
            if row.get("status") == "quarantined" or row.get("error"):
                self.errors += 1
                self.quarantined.append({"start": row.get("start"), "end": row.get("end"), "error": row.get("error"),
                                         "message": row.get("error_message"), "ledger": row.get("error_ledger")})
                del self.quarantined[:-100]
            for table, n in (row.get("rows_by_table") or {}).items():
                if n is not None:
                    self.rows[table] = self.rows.get(table, 0) + int(n)
            seconds = float(row.get("seconds") or 0.0)
            self.cpu_seconds += seconds
            self.latencies.append(seconds)
            del self.latencies[:-LATENCY_WINDOW]
            end = row.get("end")
            if end is not None:
                self.last_ledger = max(int(end), self.last_ledger or 0)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready cumulative snapshot: totals and per-component stats."""
        with self._lock:
            p50, p99 = quantile(self.latencies, 0.5), quantile(self.latencies, 0.99)
            elapsed = max(1e-9, time.time() - self.started)
            lat = {"latency_p50_ms": _ms(p50), "latency_p99_ms": _ms(p99)}
            components = {
                "source.lake": {"ledgers": self.ledgers, "rows": self.ledgers, "bytes": self.xdr_bytes,
                                "errors": self.errors, **lat, "lag_ledgers": self.total - self.ledgers},
            }
            for t in self.tables:
                components[f"processor.{t}"] = {"ledgers": self.ledgers, "rows": self.rows.get(t, 0), "bytes": None,
                                                "errors": 0, **lat, "lag_ledgers": self.total - self.ledgers}
            for s in self.sinks:
                components[f"sink.{s}"] = {"ledgers": self.ledgers, "rows": sum(self.rows.values()),
                                           "bytes": self.bytes_written if len(self.sinks) == 1 else None,
                                           "errors": 0, **lat, "lag_ledgers": self.total - self.ledgers}
            return {
                "total_ledgers": self.total,
                "ledgers": self.ledgers,
                "progress": round(self.ledgers / self.total, 4) if self.total else 1.0,
                "chunks": self.chunks,
                "rows": sum(self.rows.values()),
                "rows_by_table": dict(self.rows),
                "xdr_bytes": self.xdr_bytes,
                "bytes_written": self.bytes_written,
                "errors": self.errors,
                "quarantined": list(self.quarantined),
                "cpu_seconds": round(self.cpu_seconds, 3),
                "ledgers_per_second": round(self.ledgers / elapsed, 3),
                "last_ledger": self.last_ledger,
                "components": components,
            }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class Heartbeat(BaseModel):
    """What a running pipeline reports: its state and a cumulative stats snapshot."""

    state: State = "running"
    stats: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] | None = Field(None, description="the run summary, with the final heartbeat")


class Registration(BaseModel):
    """A pipeline that runs outside the control plane announces itself."""

    id: str | None = Field(None, pattern=PIPELINE_NAME, description="the pipeline's id (default: a new one)")
    name: str = Field(pattern=PIPELINE_NAME)
    plan_id: str | None = None
    pipeline: dict[str, Any] = Field(description="the PipelineConfig document")
    executor: str = "external"
    job_id: str | None = None


class StatsHub:
    """Latest state of every pipeline, persisted in the store; wakes SSE readers on change."""

    def __init__(self, store: Store, heartbeat_timeout: float = 120.0):
        self.store = store
        self.heartbeat_timeout = heartbeat_timeout
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}

    def register(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = {"state": "pending", "stats": {}, "error": None, "created_at": now_iso(), "updated_at": now_iso(),
               "started_at": None, "finished_at": None, **doc}
        self.store.save_pipeline(doc)
        self._bump(doc["id"])
        return doc

    def update(self, pipeline_id: str, **changes: Any) -> dict[str, Any] | None:
        with self._lock:
            doc = self.store.get_pipeline(pipeline_id)
            if doc is None:
                return None
            if doc["state"] in TERMINAL and changes.get("state") not in (None, *TERMINAL):
                changes.pop("state")
            if changes.get("state") == "running" and not doc.get("started_at"):
                changes["started_at"] = now_iso()
            if changes.get("state") in TERMINAL and not doc.get("finished_at"):
                changes["finished_at"] = now_iso()
            doc.update(changes, updated_at=now_iso())
            self.store.save_pipeline(doc)
            self._versions[pipeline_id] = self._versions.get(pipeline_id, 0) + 1
        return doc

    def heartbeat(self, pipeline_id: str, hb: Heartbeat) -> dict[str, Any] | None:
        changes: dict[str, Any] = {"state": hb.state}
        if hb.stats:
            changes["stats"] = hb.stats
        if hb.error:
            changes["error"] = hb.error
        if hb.summary is not None:
            changes["summary"] = hb.summary
        if hb.state == "succeeded" and hb.stats:
            doc = self.store.get_pipeline(pipeline_id)
            if doc and doc.get("estimate"):
                changes["estimate_vs_actual"] = compare(Estimate.model_validate(doc["estimate"]), hb.stats)
        return self.update(pipeline_id, **changes)

    def _bump(self, pipeline_id: str) -> None:
        with self._lock:
            self._versions[pipeline_id] = self._versions.get(pipeline_id, 0) + 1

    def get(self, pipeline_id: str) -> dict[str, Any] | None:
        doc = self.store.get_pipeline(pipeline_id)
        return self.public(doc) if doc else None

    def list(self) -> list[dict[str, Any]]:
        return [self.public(d) for d in self.store.list_pipelines()]

    def public(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as served: no secrets, and `stale` for a silent running pipeline."""
        out = redact({k: v for k, v in doc.items() if k != "report_token_sha256"})
        if out["state"] == "running":
            updated = datetime.fromisoformat(out["updated_at"])
            if datetime.now(timezone.utc) - updated > timedelta(seconds=self.heartbeat_timeout):
                out["state"] = "stale"
        return out

    async def events(self, pipeline_id: str, poll: float = 0.2) -> AsyncIterator[str]:
        """Server-sent events: a ``progress`` event per change, ``end`` when the run finishes."""
        seen = -1
        while True:
            version = self._versions.get(pipeline_id, 0)
            if version != seen:
                seen = version
                doc = self.get(pipeline_id)
                if doc is None:
                    yield _sse("error", {"message": f"no pipeline {pipeline_id!r}"})
                    return
                payload = {k: doc.get(k) for k in ("id", "state", "stats", "error", "updated_at")}
                yield _sse("progress", payload)
                if doc["state"] in TERMINAL:
                    yield _sse("end", {"id": pipeline_id, "state": doc["state"], "summary": doc.get("summary")})
                    return
            await asyncio.sleep(poll)

    def prometheus(self, plans_by_status: dict[str, int]) -> str:
        """Prometheus text exposition of pipeline and plan metrics."""
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

        docs = self.list()
        states: dict[str, int] = {}
        for d in docs:
            states[d["state"]] = states.get(d["state"], 0) + 1
        metric("cdp_ray_pipelines", "gauge", "Pipelines by state.", [({"state": s}, n) for s, n in sorted(states.items())])
        metric("cdp_ray_plans", "gauge", "Plans by status.", [({"status": s}, n) for s, n in sorted(plans_by_status.items())])
        per: dict[str, list[tuple[dict[str, str], float]]] = {k: [] for k in
                                                              ("ledgers", "rows", "bytes", "errors", "lag", "p50", "p99")}
        for d in docs:
            for comp, c in (d.get("stats") or {}).get("components", {}).items():
                labels = {"pipeline": d["id"], "name": d.get("name", ""), "component": comp}
                for key, src in (("ledgers", "ledgers"), ("rows", "rows"), ("bytes", "bytes"), ("errors", "errors"),
                                 ("lag", "lag_ledgers"), ("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")):
                    if c.get(src) is not None:
                        per[key].append((labels, c[src] / 1000 if key in ("p50", "p99") else c[src]))
        metric("cdp_ray_component_ledgers_total", "counter", "Ledgers processed per component.", per["ledgers"])
        metric("cdp_ray_component_rows_total", "counter", "Rows produced per component.", per["rows"])
        metric("cdp_ray_component_bytes_total", "counter", "Bytes read (source) or written (sink).", per["bytes"])
        metric("cdp_ray_component_errors_total", "counter", "Errors per component.", per["errors"])
        metric("cdp_ray_component_lag_ledgers", "gauge", "Ledgers of the range not yet processed.", per["lag"])
        metric("cdp_ray_chunk_latency_p50_seconds", "gauge", "Median chunk processing time.", per["p50"])
        metric("cdp_ray_chunk_latency_p99_seconds", "gauge", "99th percentile chunk processing time.", per["p99"])
        return "\n".join(lines) + "\n"


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
