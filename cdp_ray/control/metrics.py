"""Prometheus metrics of the control plane, with ``prometheus_client``.

Counters and the chunk-duration histogram are fed by heartbeats: each carries cumulative counters (the
increase since the previous heartbeat of the same run is added) and the durations of its latest chunks,
numbered, so a chunk is observed once however often it is resent. Labels are bounded: ``pipeline`` is
the pipeline's name (not the run id), ``component`` one of its sources, processors and sinks, and the
series of a name with no running pipeline are removed ``retention`` seconds after its last run ended.
Pipelines by state and plans by status are read from the store at scrape time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
COUNTED = (("ledgers", "ledgers"), ("rows", "rows"), ("bytes", "bytes"), ("errors", "errors"))


class _StateCollector(Collector):
    def __init__(self, states: Callable[[], dict[str, int]], plans: Callable[[], dict[str, int]],
                 lags: Callable[[], Iterable[tuple[str, str, float]]]):
        self.states, self.plans, self.lags = states, plans, lags

    def collect(self):
        g = GaugeMetricFamily("cdp_ray_pipelines", "Pipelines by state.", labels=["state"])
        for state, n in sorted(self.states().items()):
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily("cdp_ray_plans", "Plans by status.", labels=["status"])
        for status, n in sorted(self.plans().items()):
            g.add_metric([status], n)
        yield g
        g = GaugeMetricFamily("cdp_ray_component_lag_ledgers", "Ledgers of the range not yet processed, per running "
                              "pipeline and component.", labels=["pipeline", "component"])
        for name, comp, lag in self.lags():
            g.add_metric([name, comp], lag)
        yield g


class Metrics:
    """The registry served at ``/metrics``, and what heartbeats add to it."""

    def __init__(self, states: Callable[[], dict[str, int]], plans: Callable[[], dict[str, int]], retention: float = 900.0):
        self.registry = CollectorRegistry(auto_describe=True)
        self.retention = retention
        labels = ["pipeline", "component"]
        self.counters = {
            "ledgers": Counter("cdp_ray_component_ledgers", "Ledgers processed per component.", labels, registry=self.registry),
            "rows": Counter("cdp_ray_component_rows", "Rows produced per component.", labels, registry=self.registry),
            "bytes": Counter("cdp_ray_component_bytes", "Bytes read (source) or written (sink).", labels, registry=self.registry),
            "errors": Counter("cdp_ray_component_errors", "Errors (quarantined chunks) per component.", labels, registry=self.registry),
        }
        self.chunks = Histogram("cdp_ray_chunk_duration_seconds", "Time a worker spent on one chunk: read, decode, "
                                "process, commit.", ["pipeline"], buckets=CHUNK_BUCKETS, registry=self.registry)
        self.runs = Counter("cdp_ray_runs", "Runs finished, by final state.", ["state"], registry=self.registry)
        self.success = Counter("cdp_ray_success_checks", "Success criteria judged at the end of runs.",
                               ["criterion", "outcome"], registry=self.registry)
        self._lock = threading.Lock()
        self._last: dict[str, dict[str, Any]] = {}  # run id -> {"name", "counts", "chunk", "lags"}
        self._ended: dict[str, float] = {}  # pipeline name -> when its last run ended
        self._components: dict[str, set[str]] = {}  # pipeline name -> components with series
        self.registry.register(_StateCollector(states, plans, self._lags))

    def _lags(self) -> list[tuple[str, str, float]]:
        with self._lock:
            return [(run["name"], comp, lag) for run in self._last.values() for comp, lag in run["lags"].items()]

    def heartbeat(self, run_id: str, name: str, stats: dict[str, Any], state: str) -> None:
        """Add what a heartbeat of run ``run_id`` reports beyond its previous one."""
        with self._lock:
            run = self._last.setdefault(run_id, {"name": name, "counts": {}, "chunk": 0, "lags": {}})
            self._ended.pop(name, None)
            for comp, c in (stats.get("components") or {}).items():
                self._components.setdefault(name, set()).add(comp)
                for key, src in COUNTED:
                    value = c.get(src)
                    if value is None:
                        continue
                    delta = value - run["counts"].get((comp, key), 0)
                    if delta > 0:
                        self.counters[key].labels(name, comp).inc(delta)
                    run["counts"][(comp, key)] = max(value, run["counts"].get((comp, key), 0))
                if c.get("lag_ledgers") is not None:
                    run["lags"][comp] = c["lag_ledgers"]
            for n, seconds in stats.get("recent_chunks") or ():
                if n > run["chunk"]:
                    self.chunks.labels(name).observe(seconds)
                    run["chunk"] = n
            if state in ("succeeded", "failed", "stopped"):
                self._last.pop(run_id)
                self.runs.labels(state).inc()
                if not any(r["name"] == name for r in self._last.values()):
                    self._ended[name] = time.monotonic()
        self.expire()

    def judged(self, checks: list[dict[str, Any]]) -> None:
        for c in checks:
            outcome = {True: "pass", False: "fail", None: "not_judged"}[c.get("passed")]
            self.success.labels(c["criterion"], outcome).inc()

    def expire(self, now: float | None = None) -> None:
        """Drop the series of pipeline names whose last run ended more than ``retention`` seconds ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [n for n, t in self._ended.items() if now - t > self.retention]
            for name in old:
                del self._ended[name]
                for comp in self._components.pop(name, ()):
                    for counter in self.counters.values():
                        with contextlib.suppress(KeyError):
                            counter.remove(name, comp)
                with contextlib.suppress(KeyError):
                    self.chunks.remove(name)
