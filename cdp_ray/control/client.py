"""HTTP client of the control plane, and the entrypoint of pipelines it submits as Ray jobs.

Standard library only, so Ray jobs need nothing beyond cdp-ray itself. A pipeline running
anywhere reports to the control plane like this::

    client = ControlClient("http://127.0.0.1:8000", token=os.environ.get("CDP_RAY_REPORT_TOKEN"))
    pid = client.register(cfg)["id"]                     # or the id the control plane gave the job
    reporter = Reporter(client, pid, cfg)
    summary = run_pipeline(cfg, on_chunk=reporter)
    reporter.finish(summary)

``python -m cdp_ray.control.client`` runs the pipeline in ``$CDP_RAY_PIPELINE_JSON`` and reports
as pipeline ``$CDP_RAY_PIPELINE_ID`` to ``$CDP_RAY_CONTROL_URL`` with ``$CDP_RAY_REPORT_TOKEN``. When
the pipeline names credentials (``${credential:NAME}``), it fetches their values once with the report
token and substitutes them in memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from cdp_ray.control.stats import RunStats
from cdp_ray.errors import CdpRayError
from cdp_ray.pipeline.config import PipelineConfig


class ControlPlaneError(CdpRayError):
    """The control plane refused a request or could not be reached."""

    hint = "check the control-plane URL and token; `GET /health` tells whether it is up"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status, self.body = status, body


class ControlClient:
    """JSON over HTTP to a cdp-ray control plane."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, default=str).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"message": raw.decode(errors="replace")}
            detail = doc.get("detail", doc) if isinstance(doc, dict) else doc
            msg = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
            hint = detail.get("hint") if isinstance(detail, dict) else None
            raise ControlPlaneError(f"{method} {path}: HTTP {exc.code}: {msg}", status=exc.code, body=detail,
                                    hint=hint) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ControlPlaneError(f"cannot reach the control plane at {self.url}: {exc}") from exc
        if "json" in ctype:
            return json.loads(raw)
        return raw.decode()

    # discovery and plans ---------------------------------------------------------------------

    def tools(self) -> list[dict]:
        return self.request("GET", "/tools")

    def plan(self, desired: dict, current: dict | None = None) -> dict:
        return self.request("POST", "/plans", {"desired": desired, "current": current})

    def get_plan(self, plan_id: str) -> dict:
        return self.request("GET", f"/plans/{plan_id}")

    def approve(self, plan_id: str, comment: str = "") -> dict:
        return self.request("POST", f"/plans/{plan_id}/approve", {"comment": comment})

    def apply(self, plan_id: str) -> dict:
        return self.request("POST", f"/plans/{plan_id}/apply")

    def status(self, pipeline_id: str) -> dict:
        return self.request("GET", f"/pipelines/{pipeline_id}/status")

    # reporting -------------------------------------------------------------------------------

    def register(self, cfg: PipelineConfig, *, pipeline_id: str | None = None, plan_id: str | None = None,
                 job_id: str | None = None) -> dict:
        return self.request("POST", "/pipelines", {
            "id": pipeline_id, "name": cfg.name, "plan_id": plan_id,
            "pipeline": cfg.model_dump(mode="json"), "executor": "ray-job" if job_id else "external", "job_id": job_id,
        })

    def credentials(self, pipeline_id: str) -> dict[str, str]:
        """The values of the credentials the pipeline names; the control plane answers this once."""
        return self.request("POST", f"/pipelines/{pipeline_id}/credentials")["credentials"]

    def heartbeat(self, pipeline_id: str, state: str, stats: dict, *, error: str | None = None,
                  summary: dict | None = None) -> dict:
        return self.request("POST", f"/pipelines/{pipeline_id}/heartbeat",
                            {"state": state, "stats": stats, "error": error, "summary": summary})


class Reporter:
    """An ``on_chunk`` callback that accumulates stats and heartbeats at most every ``interval`` s.

    Heartbeat failures never fail the run: the next heartbeat carries the cumulative counts.
    """

    def __init__(self, client: ControlClient, pipeline_id: str, cfg: PipelineConfig, interval: float = 1.0):
        self.client, self.pipeline_id = client, pipeline_id
        self.stats = RunStats(cfg)
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()
        self.failures = 0
        self._send("running")

    def _send(self, state: str, **kw: Any) -> None:
        try:
            self.client.heartbeat(self.pipeline_id, state, self.stats.snapshot(), **kw)
        except ControlPlaneError as exc:
            self.failures += 1
            print(f"cdp-ray: heartbeat to {self.client.url} failed: {exc.message}", file=sys.stderr)

    def __call__(self, row: dict) -> None:
        self.stats.add_chunk(row)
        with self._lock:
            due = time.monotonic() - self._last >= self.interval
            if due:
                self._last = time.monotonic()
        if due:
            self._send("running")

    def finish(self, summary: Any = None, error: BaseException | None = None) -> None:
        """The final heartbeat: ``succeeded`` with the run summary, or ``failed`` with the error."""
        if error is not None:
            msg = error.message if isinstance(error, CdpRayError) else f"{type(error).__name__}: {error}"
            self._send("failed", error=msg)
        else:
            doc = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else summary
            self._send("succeeded", summary=doc)


def run_reported(cfg: PipelineConfig, client: ControlClient, pipeline_id: str, *, interval: float = 1.0):
    """Run ``cfg`` with ``run_pipeline`` and report its progress as ``pipeline_id``."""
    from cdp_ray.pipeline.runner import run_pipeline

    reporter = Reporter(client, pipeline_id, cfg, interval=interval)
    try:
        summary = run_pipeline(cfg, on_chunk=reporter)
    except BaseException as exc:
        reporter.finish(error=exc)
        raise
    reporter.finish(summary)
    return summary


def main() -> int:
    """Ray job entrypoint: run the pipeline the control plane passed in the environment."""
    from cdp_ray.control.secrets import credential_names, substitute

    try:
        url = os.environ["CDP_RAY_CONTROL_URL"]
        pipeline_id = os.environ["CDP_RAY_PIPELINE_ID"]
        doc = json.loads(os.environ["CDP_RAY_PIPELINE_JSON"])
    except KeyError as exc:
        print(f"cdp-ray: {exc.args[0]} is not set; this entrypoint is started by the control plane", file=sys.stderr)
        return 2
    client = ControlClient(url, token=os.environ.get("CDP_RAY_REPORT_TOKEN"))
    try:
        if credential_names(doc):
            doc = substitute(doc, client.credentials(pipeline_id))
        cfg = PipelineConfig.model_validate(doc)
        run_reported(cfg, client, pipeline_id)
    except CdpRayError as exc:
        print(f"cdp-ray: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
