"""Where applied pipelines run: as Ray jobs when a Ray dashboard is configured, else in-process.

In-process runs use ``run_pipeline`` on a background thread and feed the stats hub directly.
Ray jobs run ``python -m cdp_ray.control.client``, which reports heartbeats over HTTP with a
per-pipeline report token; a watcher thread marks the pipeline failed if the job dies silently.

Named credentials are substituted only in memory: an in-process run gets the resolved config; a
Ray job's runtime env carries the plan's placeholders and the report token, and the job fetches the
values once (``POST /pipelines/{id}/credentials``), so no secret is stored in Ray's job table.
A run that cannot start raises an :class:`~cdp_ray.control.errors.ExecutorError` and is recorded failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from cdp_ray.control import telemetry
from cdp_ray.control.errors import ExecutorError, JobSubmitError, RayUnavailable
from cdp_ray.control.plans import Plan
from cdp_ray.control.secrets import Credentials, credential_names
from cdp_ray.control.stats import Heartbeat, RunStats, StatsHub
from cdp_ray.errors import CdpRayError, ConfigError
from cdp_ray.pipeline.config import PipelineConfig


class LocalExecutor:
    """Runs pipelines on the Ray cluster this process is connected to, a few at a time."""

    kind = "local"

    def __init__(self, hub: StatsHub, max_concurrent: int = 2, credentials: Credentials | None = None):
        self.hub = hub
        self.credentials = credentials or Credentials({})
        self.pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="cdp-ray-run")

    def submit(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str) -> dict[str, Any]:
        resolved = self.credentials.resolve(cfg)
        self.hub.register(_record(plan, cfg, pipeline_id, self.kind))
        try:
            self.pool.submit(self._run, plan, resolved, pipeline_id)
        except RuntimeError as exc:  # the pool is shut down: the control plane is stopping
            _never_started(self.hub, pipeline_id, ExecutorError(f"the in-process runner does not accept runs: {exc}",
                                                                hint="the control plane is shutting down; apply again after it restarts"))
        return {"executor": self.kind}

    def _run(self, plan: Plan, cfg: PipelineConfig, pipeline_id: str) -> None:
        from cdp_ray.pipeline.runner import run_pipeline

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        stats = RunStats(cfg)

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
                summary = run_pipeline(cfg, on_chunk=on_chunk)
            except BaseException as exc:  # the run's failure is reported, never raised into the pool
                msg = exc.message if isinstance(exc, CdpRayError) else f"{type(exc).__name__}: {exc}"
                sp.set_attribute("error", msg)
                self.hub.heartbeat(pipeline_id, Heartbeat(state="failed", stats=stats.snapshot(), error=msg))
                return
            self.hub.heartbeat(pipeline_id, Heartbeat(state="succeeded", stats=stats.snapshot(),
                                                      summary=dataclasses.asdict(summary)))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RayJobExecutor:
    """Submits pipelines as Ray jobs through the dashboard's job API."""

    kind = "ray-job"

    def __init__(self, hub: StatsHub, address: str, public_url: str | None, poll_seconds: float = 5.0,
                 client: Any = None, credentials: Credentials | None = None):
        if not public_url:
            raise ConfigError("ray_address is set but public_url is not",
                              hint="set public_url to the URL at which Ray jobs reach this control plane")
        self.hub, self.address, self.public_url, self.poll = hub, address, public_url, poll_seconds
        self.credentials = credentials or Credentials({})
        self.client = client

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
        self.credentials.values(credential_names(cfg.model_dump(mode="json")))  # readable now, fetched by the job
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

        while True:
            time.sleep(self.poll)
            try:
                status = self._client().get_job_status(job_id)
            except Exception:  # the dashboard may restart; keep watching
                continue
            if status in (JobStatus.STOPPED, JobStatus.FAILED):
                doc = self.hub.get(pipeline_id)
                if doc and doc["state"] not in ("succeeded", "failed"):
                    info = self._client().get_job_info(job_id)
                    self.hub.heartbeat(pipeline_id, Heartbeat(state="failed", error=f"Ray job {job_id} {status}: {info.message}"))
                return
            if status == JobStatus.SUCCEEDED:
                return

    def shutdown(self) -> None:
        """Jobs keep running on the cluster; nothing to stop here."""


def _never_started(hub: StatsHub, pipeline_id: str, err: ExecutorError) -> NoReturn:
    """Record the pipeline as failed (it never ran) and raise ``err``."""
    hub.heartbeat(pipeline_id, Heartbeat(state="failed", error=f"not started: {err.message}"))
    raise err


def _record(plan: Plan, cfg: PipelineConfig, pipeline_id: str, executor: str) -> dict[str, Any]:
    return {
        "id": pipeline_id, "name": cfg.name, "plan_id": plan.id, "executor": executor,
        "pipeline": cfg.model_dump(mode="json"), "estimate": plan.estimate.model_dump(mode="json"),
        "outputs": [s.model_dump(mode="json") for s in cfg.sinks],
    }
