"""Where applied pipelines run: as Ray jobs when a Ray dashboard is configured, else in-process.

In-process runs use ``run_pipeline`` on a background thread and feed the stats hub directly.
Ray jobs run ``python -m cdp_ray.control.client``, which reports heartbeats over HTTP with a
per-pipeline report token; a watcher thread marks the pipeline failed if the job dies silently.

Stopping: an in-process run's ``should_stop`` turns true at once; a Ray job learns of the request from
the reply to its next heartbeat. Either way no chunk starts after that, the chunks in flight commit,
and the run ends ``stopped``. A Ray job that has not ended ``stop_grace_seconds`` later (or at once with
``force``) is stopped with ``JobSubmissionClient.stop_job``: its chunks in flight are abandoned, and
a sink's commit is atomic, so each is either committed or not there (``--resume`` reruns it).

Named credentials are substituted only in memory: an in-process run gets the resolved config; a
Ray job's runtime env carries the plan's placeholders and the report token, and the job fetches the
values once (``POST /pipelines/{id}/credentials``), so no secret is stored in Ray's job table.
A run that cannot start raises an :class:`~cdp_ray.control.errors.ExecutorError` and is recorded failed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from cdp_ray.control import telemetry
from cdp_ray.control.errors import ExecutorError, JobSubmitError, RayUnavailable
from cdp_ray.control.plans import Plan
from cdp_ray.control.secrets import Credentials, credential_names
from cdp_ray.control.estimate import compare
from cdp_ray.control.stats import TERMINAL, Heartbeat, RunStats, StatsHub, conclude
from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import PipelineConfig


class LocalExecutor:
    """Runs pipelines on the Ray cluster this process is connected to, a few at a time."""

    kind = "local"

    def __init__(self, hub: StatsHub, max_concurrent: int = 2, credentials: Credentials | None = None):
        self.hub = hub
        self.credentials = credentials or Credentials({})
        self.pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="cdp-ray-run")
        self.stops: dict[str, threading.Event] = {}

    def submit(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str) -> dict[str, Any]:
        from opentelemetry import context

        resolved = self.credentials.resolve(cfg)
        self.hub.register(_record(plan, cfg, pipeline_id, self.kind))
        self.stops[pipeline_id] = threading.Event()
        try:
            self.pool.submit(self._run, plan, resolved, pipeline_id, context.get_current())
        except RuntimeError as exc:  # the pool is shut down: the control plane is stopping
            _never_started(self.hub, pipeline_id, ExecutorError(f"the in-process runner does not accept runs: {exc}",
                                                                hint="the control plane is shutting down; apply again after it restarts"))
        return {"executor": self.kind}

    def stop(self, pipeline_id: str, doc: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """Turn the run's ``should_stop`` true: it starts no chunk, those in flight commit."""
        event = self.stops.get(pipeline_id)
        if event is not None:
            event.set()
        return {"stopping": event is not None}

    def _run(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str, ctx: Any = None) -> None:
        from opentelemetry import context

        token = context.attach(ctx) if ctx is not None else None
        try:
            self._run_traced(plan, cfg, pipeline_id)
        finally:
            self.stops.pop(pipeline_id, None)
            if token is not None:
                context.detach(token)

    def _run_traced(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str) -> None:
        from cdp_ray.pipeline.runner import run_pipeline

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        stats = RunStats(cfg)
        stop = self.stops[pipeline_id]

        def on_chunk(row: dict) -> None:
            stats.add_chunk(row)
            ended = datetime.now(timezone.utc)
            telemetry.record_stage("pipeline.chunk", ended - timedelta(seconds=float(row.get("seconds") or 0)), ended,
                                   pipeline_id=pipeline_id, start=int(row["start"]), end=int(row["end"]),
                                   ledgers=int(row.get("ledgers") or 0), rows=int(row.get("rows") or 0))
            self.hub.heartbeat(pipeline_id, Heartbeat(state="running", stats=stats.snapshot()))

        with telemetry.span("pipeline.run", pipeline_id=pipeline_id, plan_id=plan.id, pipeline=cfg.name) as sp:
            self.hub.heartbeat(pipeline_id, Heartbeat(state="running", stats=stats.snapshot()))
            try:
                summary = run_pipeline(cfg, on_chunk=on_chunk, should_stop=stop.is_set)
            except BaseException as exc:  # the run's failure is reported, never raised into the pool
                final = conclude(cfg, stats, None, exc)
                sp.set_attribute("error", final.error or "")
            else:
                final = conclude(cfg, stats, summary, ratios=compare(plan.estimate, stats.snapshot()))
            sp.set_attribute("state", final.state)
            self.hub.heartbeat(pipeline_id, final)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayJobExecutor:
    """Submits pipelines as Ray jobs through the dashboard's job API."""

    kind = "ray-job"

    def __init__(self, hub: StatsHub, address: str, public_url: str | None, poll_seconds: float = 5.0,
                 client: Any = None, credentials: Credentials | None = None, stop_grace_seconds: float = 60.0):
        if not public_url:
            raise ConfigError("ray_address is set but public_url is not",
                              hint="set public_url to the URL at which Ray jobs reach this control plane")
        self.hub, self.address, self.public_url, self.poll = hub, address, public_url, poll_seconds
        self.credentials = credentials or Credentials({})
        self.client = client
        self.stop_grace = stop_grace_seconds
        self._closed = threading.Event()

    def _client(self) -> Any:
        """The dashboard's job client, connected on first use (the control plane starts without Ray)."""
        if self.client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self.client = JobSubmissionClient(self.address)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError or requests' errors
                raise RayUnavailable(f"cannot reach the Ray dashboard at {self.address}: {exc}") from None
        return self.client

    def submit(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str) -> dict[str, Any]:
        from opentelemetry import propagate

        self.credentials.values(credential_names(cfg.model_dump(mode="json")))  # readable now, fetched by the job
        trace_env: dict[str, str] = {}
        propagate.inject(trace_env)  # the job's heartbeats continue the apply request's trace
        client = self._client()
        token = secrets.token_urlsafe(24)
        record = _record(plan, cfg, pipeline_id, self.kind)
        record["report_token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
        self.hub.register(record)
        try:
            job_id = client.submit_job(
                entrypoint="python -m cdp_ray.control.client",
                submission_id=pipeline_id,
                runtime_env={"env_vars": {
                    "CDP_RAY_CONTROL_URL": self.public_url, "CDP_RAY_PIPELINE_ID": pipeline_id,
                    "CDP_RAY_REPORT_TOKEN": token, "CDP_RAY_PIPELINE_JSON": cfg.model_dump_json(),
                    **{k.upper(): v for k, v in trace_env.items()},
                }},
                metadata={"cdp_ray_plan": plan.id, "cdp_ray_pipeline": cfg.name},
            )
        except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
            _never_started(self.hub, pipeline_id, RayUnavailable(f"cannot reach the Ray dashboard at {self.address}: {exc}"))
        except Exception as exc:  # the dashboard answered with an error: RuntimeError with its message
            _never_started(self.hub, pipeline_id, JobSubmitError(f"the Ray dashboard at {self.address} refused the job: {exc}"))
        self.hub.update(pipeline_id, job_id=job_id)
        threading.Thread(target=self._watch, args=(pipeline_id, job_id), daemon=True, name=f"watch-{job_id}").start()
        return {"executor": self.kind, "job_id": job_id}

    def _watch(self, pipeline_id: str, job_id: str) -> None:
        from ray.job_submission import JobStatus

        while not self._closed.wait(self.poll):
            try:
                status = self._client().get_job_status(job_id)
            except Exception:  # the dashboard may restart; keep watching
                continue
            doc = self.hub.get(pipeline_id)
            if status in (JobStatus.STOPPED, JobStatus.FAILED):
                if doc and doc["state"] not in TERMINAL:
                    if doc.get("stop_requested"):
                        self.hub.heartbeat(pipeline_id, Heartbeat(state="stopped", error=None))
                    else:
                        info = self._client().get_job_info(job_id)
                        self.hub.heartbeat(pipeline_id, Heartbeat(state="failed", error=f"Ray job {job_id} {status}: {info.message}"))
                return
            if status == JobStatus.SUCCEEDED:
                return
            requested = (doc or {}).get("stop_requested")
            if requested and _age(requested["at"]) > self.stop_grace:
                self.stop(pipeline_id, doc or {}, force=True)

    def stop(self, pipeline_id: str, doc: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """The job hears of the stop in its next heartbeat's reply; ``force`` (or the grace running out)
        stops it through the dashboard at once."""
        job_id = doc.get("job_id")
        if not force or not job_id:
            return {"stopping": True, "job_id": job_id}
        try:
            stopped = self._client().stop_job(job_id)
        except Exception as exc:  # the dashboard refused or is down: the cooperative stop still stands
            raise RayUnavailable(f"cannot stop Ray job {job_id} at {self.address}: {exc}") from None
        return {"stopping": True, "job_id": job_id, "stop_job": bool(stopped)}

    def shutdown(self) -> None:
        """Jobs keep running on the cluster; their watchers stop."""
        self._closed.set()


def _age(iso: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()


def _never_started(hub: StatsHub, pipeline_id: str, err: ExecutorError) -> NoReturn:
    """Record the pipeline as failed (it never ran) and raise ``err``."""
    hub.heartbeat(pipeline_id, Heartbeat(state="failed", error=f"not started: {err.message}"))
    raise err


def _record(plan: Plan, cfg: PipelineConfig, pipeline_id: str, executor: str) -> dict[str, Any]:
    return {
        "id": pipeline_id, "name": cfg.name, "plan_id": plan.id, "executor": executor,
        "pipeline": cfg.model_dump(mode="json"), "estimate": plan.estimate.model_dump(mode="json"),
        "outputs": [s.model_dump(mode="json") for s in cfg.sinks], "trace_id": telemetry.trace_id(),
    }
