"""Running pipelines: registration, heartbeats with per-component stats, stop requests, logs and events.

A run accumulates its chunk results in :class:`RunStats` (in the control plane for in-process
runs, in the Ray job or CLI for the others) and sends cumulative snapshots as heartbeats, so a lost
heartbeat loses no counts; the latest chunk durations and log records ride along, numbered, so a
resent one is counted once. :class:`StatsHub` keeps the latest snapshot of every pipeline in the
store, answers heartbeats with any stop request, feeds the Prometheus metrics and wakes event-stream
readers (no polling: a reader waits for a change, or re-reads the store every ``recheck`` seconds for
changes another replica made).
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Literal

from pydantic import BaseModel, Field
from sse_starlette import ServerSentEvent

from cdp_ray.control.estimate import Estimate, compare
from cdp_ray.control.metrics import Metrics
from cdp_ray.control.secrets import redact, redact_text
from cdp_ray.control.store import Store, now_iso
from cdp_ray.pipeline.config import PIPELINE_NAME, PipelineConfig
from cdp_ray.pipeline.success import Verdict, estimate_check

State = Literal["pending", "running", "stopping", "succeeded", "failed", "stopped"]
TERMINAL = ("succeeded", "failed", "stopped")
LATENCY_WINDOW = 2048
RECENT_CHUNKS = 256
RECENT_LOGS = 100
SSE_RETRY_MS = 2000


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in [0, 1]) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[idx]


class RunStats:
    """Cumulative stats of one run, fed by ``run_pipeline``'s ``on_chunk`` rows; also the run's log records
    (warnings and errors) and the ledger intervals it committed (for its success criteria)."""

    def __init__(self, cfg: PipelineConfig):
        from cdp_ray.pipeline.success import Committed

        self.total = cfg.source.end - cfg.source.start + 1
        self.tables = [s.name for s in cfg.processors]
        self.sinks = [s.type for s in cfg.sinks]
        self.chunks = self.ledgers = self.xdr_bytes = self.bytes_written = self.errors = 0
        self.rows: dict[str, int] = {t: 0 for t in self.tables}
        self.latencies: list[float] = []
        self.recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=RECENT_CHUNKS)
        self.logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_LOGS)
        self.log_seq = 0
        self.quarantined: list[dict[str, Any]] = []
        self.committed = Committed()
        self.cpu_seconds = 0.0
        self.started = time.time()
        self.last_ledger: int | None = None
        self._lock = threading.Lock()

    def log(self, level: Literal["info", "warning", "error"], message: str) -> None:
        """A record for the run's log stream (``GET /pipelines/{id}/logs``)."""
        with self._lock:
            self.log_seq += 1
            self.logs.append({"seq": self.log_seq, "ts": now_iso(), "level": level, "message": message[:2000]})

    def add_chunk(self, row: dict[str, Any]) -> None:
        quarantined = row.get("status") == "quarantined" or row.get("error")
        if quarantined:
            self.log("warning", f"ledgers {row.get('start')}-{row.get('end')} quarantined: {row.get('error')}: "
                     f"{row.get('error_message')}")
        with self._lock:
            self.chunks += 1
            self.ledgers += int(row.get("ledgers") or 0)
            self.xdr_bytes += int(row.get("xdr_bytes") or 0)
            self.bytes_written += int(row.get("bytes_written") or 0)
            if quarantined:
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
            self.recent.append((self.chunks, seconds))
            self.committed.add(row)
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
                "recent_chunks": list(self.recent),
            }

    def recent_logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.logs)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def final_state(summary: Any, error: BaseException | str | None, verdict: Verdict | None) -> tuple[State, str | None]:
    """How a finished run ends: ``failed`` on an error or failed success criteria, ``stopped`` when a stop
    request ended it early, else ``succeeded``; with the error message."""
    from cdp_ray.errors import CdpRayError

    if error is not None:
        if isinstance(error, BaseException):
            return "failed", error.message if isinstance(error, CdpRayError) else f"{type(error).__name__}: {error}"
        return "failed", error
    if getattr(summary, "stopped", False):
        return "stopped", None
    if verdict is not None and not verdict.passed:
        return "failed", "success criteria failed: " + "; ".join(f"{c.name}: {c.detail}" for c in verdict.failures())
    return "succeeded", None


def summary_json(summary: Any) -> dict[str, Any] | None:
    import dataclasses

    return dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else summary


def conclude(cfg: PipelineConfig, stats: RunStats, summary: Any, error: BaseException | None = None,
             ratios: dict[str, float | None] | None = None, terminated: bool = False) -> Heartbeat:
    """The final heartbeat of a run: its success criteria judged (unless it failed or was stopped), its
    state, and log records for what went wrong. ``terminated``: the process was told to end (SIGTERM from
    ``ray job stop``) before the run did: ``stopped``, its chunks in flight abandoned."""
    from cdp_ray.pipeline.success import evaluate

    if terminated:
        stats.log("warning", "stopped: the job was terminated; chunks in flight were abandoned (each is committed "
                  "whole or not at all), committed ranges are kept and a run with --resume continues")
        return Heartbeat(state="stopped", stats=stats.snapshot(), error=None, summary=summary_json(summary),
                         success=None, logs=stats.recent_logs())
    verdict = None
    if error is None and summary is not None and not getattr(summary, "stopped", False):
        verdict = evaluate(cfg, summary, stats.committed.intervals, ratios)
    state, message = final_state(summary, error, verdict)
    if message:
        stats.log("error", message)
    elif state == "stopped":
        stats.log("warning", f"stopped on request after {summary.chunks} of {summary.chunks_planned} chunks; committed "
                  "ranges are kept and a run with --resume continues")
    return Heartbeat(state=state, stats=stats.snapshot(), error=message, summary=summary_json(summary),
                     success=verdict.to_json() if verdict else None, logs=stats.recent_logs())


class LogRecord(BaseModel):
    seq: int = Field(ge=1)
    ts: str = Field(max_length=64)
    level: Literal["info", "warning", "error"]
    message: str = Field(max_length=2000)


class Heartbeat(BaseModel):
    """What a running pipeline reports: its state, a cumulative stats snapshot, its latest log records,
    and with the final heartbeat the run summary and success criteria."""

    state: State = "running"
    stats: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] | None = Field(None, description="the run summary, with the final heartbeat")
    success: dict[str, Any] | None = Field(None, description="the success criteria's verdict, with the final heartbeat")
    logs: list[LogRecord] = Field(default_factory=list, max_length=RECENT_LOGS)


class HeartbeatReply(BaseModel):
    id: str
    state: State | None
    stop: bool = Field(False, description="a stop was requested: start no chunk, finish those in flight, report `stopped`")


class Registration(BaseModel):
    """A pipeline that runs outside the control plane announces itself."""

    id: str | None = Field(None, pattern=PIPELINE_NAME, description="the pipeline's id (default: a new one)")
    name: str = Field(pattern=PIPELINE_NAME)
    plan_id: str | None = None
    pipeline: dict[str, Any] = Field(description="the PipelineConfig document")
    executor: str = Field("external", max_length=64)
    job_id: str | None = Field(None, max_length=256)


class StatsHub:
    """Latest state of every pipeline, persisted in the store; stop requests, logs, metrics, event streams."""

    def __init__(self, store: Store, heartbeat_timeout: float = 120.0, *, recheck: float = 15.0,
                 metrics_retention: float = 900.0):
        self.store = store
        self.heartbeat_timeout = heartbeat_timeout
        self.recheck = recheck
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._versions: dict[str, int] = {}
        self.metrics = Metrics(self._states, store.plan_counts, metrics_retention)

    def _states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.list():
            out[d["state"]] = out.get(d["state"], 0) + 1
        return out

    def register(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = {"state": "pending", "stats": {}, "error": None, "created_at": now_iso(), "updated_at": now_iso(),
               "started_at": None, "finished_at": None, "seq": 1, **doc}
        self.store.save_pipeline(doc)
        self._notify(doc["id"])
        return doc

    def update(self, pipeline_id: str, **changes: Any) -> dict[str, Any] | None:
        with self._lock:
            doc = self.store.get_pipeline(pipeline_id)
            if doc is None:
                return None
            state = changes.get("state")
            if doc["state"] in TERMINAL and state not in (None, *TERMINAL):
                changes.pop("state")
            elif doc["state"] == "stopping" and state in ("pending", "running"):
                changes.pop("state")  # a stop was requested; the run has not ended yet
            if changes.get("state") == "running" and not doc.get("started_at"):
                changes["started_at"] = now_iso()
            if changes.get("state") in TERMINAL and not doc.get("finished_at"):
                changes["finished_at"] = now_iso()
            doc.update(changes, updated_at=now_iso(), seq=int(doc.get("seq") or 0) + 1)
            self.store.save_pipeline(doc)
        self._notify(pipeline_id)
        return doc

    def heartbeat(self, pipeline_id: str, hb: Heartbeat) -> dict[str, Any] | None:
        doc = self.store.get_pipeline(pipeline_id)
        if doc is None:
            return None
        stats = dict(hb.stats)
        recent = stats.pop("recent_chunks", None)
        changes: dict[str, Any] = {"state": hb.state}
        if stats:
            changes["stats"] = stats
        if hb.error:
            changes["error"] = redact_text(hb.error)
        if hb.summary is not None:
            changes["summary"] = hb.summary
        if hb.state in TERMINAL and doc.get("estimate") and stats:
            changes["estimate_vs_actual"] = compare(Estimate.model_validate(doc["estimate"]), stats)
        if hb.success is not None:
            verdict = Verdict.from_json(hb.success)
            factor = ((doc.get("pipeline") or {}).get("success") or {}).get("estimate_within")
            if factor and "estimate_vs_actual" in changes:  # the control plane holds the plan's estimate
                verdict = verdict.with_check(estimate_check(float(factor), changes["estimate_vs_actual"]))
                if not verdict.passed and hb.state == "succeeded":
                    changes["state"], changes["error"] = final_state(None, None, verdict)
            changes["success"] = verdict.to_json()
            self.metrics.judged(changes["success"]["checks"])
        if hb.logs:
            self.store.add_logs(pipeline_id, [r.model_dump() for r in hb.logs])
        self.metrics.heartbeat(pipeline_id, doc.get("name", ""), {**stats, "recent_chunks": recent or []},
                               changes["state"])
        return self.update(pipeline_id, **changes)

    def request_stop(self, pipeline_id: str, by: str) -> dict[str, Any] | None:
        """Record a stop request: the run starts no chunk after it sees it and ends ``stopped``."""
        doc = self.store.get_pipeline(pipeline_id)
        if doc is None or doc["state"] in TERMINAL:
            return doc
        return self.update(pipeline_id, state="stopping", stop_requested={"by": by, "at": now_iso()})

    def stop_requested(self, pipeline_id: str) -> bool:
        doc = self.store.get_pipeline(pipeline_id)
        return bool(doc and doc.get("stop_requested"))

    def get(self, pipeline_id: str) -> dict[str, Any] | None:
        doc = self.store.get_pipeline(pipeline_id)
        return self.public(doc) if doc else None

    def list(self) -> list[dict[str, Any]]:
        return [self.public(d) for d in self.store.list_pipelines()]

    def public(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as served: no secrets, and `stale` for a silent running pipeline."""
        out = redact({k: v for k, v in doc.items() if k != "report_token_sha256"})
        if out["state"] in ("running", "stopping"):
            updated = datetime.fromisoformat(out["updated_at"])
            if datetime.now(timezone.utc) - updated > timedelta(seconds=self.heartbeat_timeout):
                out["state"] = "stale"
        return out

    # ---- waking readers ----------------------------------------------------------------------

    def _notify(self, pipeline_id: str) -> None:
        with self._lock:
            self._versions[pipeline_id] = self._versions.get(pipeline_id, 0) + 1
            waiters = list(self._waiters.get(pipeline_id, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def version(self, pipeline_id: str) -> int:
        return self._versions.get(pipeline_id, 0)

    async def changed(self, pipeline_id: str, version: int) -> None:
        """Return once the pipeline changed here after ``version``, or after ``recheck`` seconds."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._versions.get(pipeline_id, 0) != version:
                return
            self._waiters.setdefault(pipeline_id, set()).add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), self.recheck)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                waiters = self._waiters.get(pipeline_id, set())
                waiters.discard(entry)
                if not waiters:
                    self._waiters.pop(pipeline_id, None)

    async def events(self, pipeline_id: str, last_id: int = 0) -> AsyncIterator[ServerSentEvent]:
        """``progress`` on every change after event ``last_id``, then ``end`` when the run has finished.
        Event ids are the pipeline's change counter, so a client resumes with ``Last-Event-ID``."""
        from starlette.concurrency import run_in_threadpool

        seen = last_id
        while True:
            version = self.version(pipeline_id)
            doc = await run_in_threadpool(self.get, pipeline_id)
            if doc is None:
                yield ServerSentEvent(event="error", data=json.dumps({"message": f"no pipeline {pipeline_id!r}"}))
                return
            seq = int(doc.get("seq") or 0)
            if seq > seen:
                seen = seq
                payload = {k: doc.get(k) for k in ("id", "state", "stats", "error", "updated_at")}
                yield ServerSentEvent(id=str(seq), event="progress", data=json.dumps(payload, default=str),
                                      retry=SSE_RETRY_MS)
            if doc["state"] in TERMINAL:
                end = {"id": pipeline_id, "state": doc["state"], "summary": doc.get("summary"),
                       "success": doc.get("success"), "error": doc.get("error")}
                yield ServerSentEvent(id=str(seq), event="end", data=json.dumps(end, default=str))
                return
            await self.changed(pipeline_id, version)

    async def logs(self, pipeline_id: str, last_id: int = 0) -> AsyncIterator[ServerSentEvent]:
        """The run's log records after ``last_id`` as ``log`` events (id: the record's number), then ``end``
        once the run has finished and every record was sent."""
        from starlette.concurrency import run_in_threadpool

        seen = last_id
        while True:
            version = self.version(pipeline_id)
            doc = await run_in_threadpool(self.store.get_pipeline, pipeline_id)
            if doc is None:
                yield ServerSentEvent(event="error", data=json.dumps({"message": f"no pipeline {pipeline_id!r}"}))
                return
            for rec in await run_in_threadpool(self.store.logs, pipeline_id, seen):
                seen = rec["seq"]
                yield ServerSentEvent(id=str(seen), event="log", data=json.dumps(rec), retry=SSE_RETRY_MS)
            if doc["state"] in TERMINAL:
                yield ServerSentEvent(id=str(seen), event="end", data=json.dumps({"id": pipeline_id, "state": doc["state"]}))
                return
            await self.changed(pipeline_id, version)
