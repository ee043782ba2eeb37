"""HTTP client of the control plane, and the entrypoint of pipelines it submits as Ray jobs.

Standard library only, so Ray jobs need nothing beyond cdp-ray itself. A pipeline running
anywhere reports to the control plane like this::

    client = ControlClient("http://127.0.0.1:8000", token=os.environ.get("CDP_RAY_REPORT_TOKEN"))
    pid = client.register(cfg)["id"]                     # or the id the control plane gave the job
    reporter = Reporter(client, pid, cfg)
    summary = run_pipeline(cfg, on_chunk=reporter, should_stop=reporter.should_stop)
    reporter.finish(summary)

``cdp-ray run`` and ``jobs/backfill.py`` do this through :class:`RunHooks` when ``--control-url`` (or
``$CDP_RAY_CONTROL_URL``) is given. A stop requested at the control plane reaches the run in the reply
to a heartbeat (sent after chunks, and every ``keepalive`` seconds between them).

``python -m cdp_ray.control.client`` runs the pipeline in ``$CDP_RAY_PIPELINE_JSON`` and reports
as pipeline ``$CDP_RAY_PIPELINE_ID`` to ``$CDP_RAY_CONTROL_URL`` with ``$CDP_RAY_REPORT_TOKEN``. When
the pipeline names credentials (``${credential:NAME}``), it fetches their values once with the report
token and substitutes them in memory.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from cdp_ray.control.stats import Heartbeat, RunStats, conclude
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
        self.trace_headers: dict[str, str] = {}
        if os.environ.get("TRACEPARENT"):  # a Ray job submitted by the control plane continues its trace
            self.trace_headers = {"traceparent": os.environ["TRACEPARENT"]}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, default=str).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for name, value in self.trace_headers.items():
            req.add_header(name, value)
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

    def stop(self, pipeline_id: str, *, force: bool = False, comment: str = "") -> dict:
        return self.request("POST", f"/pipelines/{pipeline_id}/stop", {"force": force, "comment": comment})

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
                  summary: dict | None = None, success: dict | None = None, logs: list | None = None) -> dict:
        """Send a heartbeat; the reply's ``stop`` says whether a stop was requested."""
        return self.request("POST", f"/pipelines/{pipeline_id}/heartbeat",
                            {"state": state, "stats": stats, "error": error, "summary": summary, "success": success,
                             "logs": logs or []})


class Reporter:
    """An ``on_chunk`` callback that accumulates stats and heartbeats at most every ``interval`` s, and every
    ``keepalive`` s from a background thread; :meth:`should_stop` turns true once a reply asks to stop.

    Heartbeat failures never fail the run: the next heartbeat carries the cumulative counts.
    """

    def __init__(self, client: ControlClient, pipeline_id: str, cfg: PipelineConfig, interval: float = 1.0,
                 keepalive: float | None = 10.0):
        self.client, self.pipeline_id, self.cfg = client, pipeline_id, cfg
        self.stats = RunStats(cfg)
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.failures = 0
        self._send("running")
        if keepalive:
            threading.Thread(target=self._keepalive, args=(keepalive,), daemon=True, name="cdp-ray-heartbeat").start()

    def _keepalive(self, every: float) -> None:
        while not self._done.wait(every):
            self._send("running")

    def _send(self, state: str, **kw: Any) -> None:
        with self._send_lock:
            try:
                reply = self.client.heartbeat(self.pipeline_id, state, self.stats.snapshot(),
                                              logs=self.stats.recent_logs(), **kw)
            except ControlPlaneError as exc:
                self.failures += 1
                print(f"cdp-ray: heartbeat to {self.client.url} failed: {exc.message}", file=sys.stderr)
                return
        if isinstance(reply, dict) and reply.get("stop") and not self._stop.is_set():
            self._stop.set()
            print(f"cdp-ray: the control plane asked pipeline {self.pipeline_id} to stop: no chunk starts now; "
                  "chunks in flight finish", file=sys.stderr)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop as if the control plane had asked (a SIGTERM from ``ray job stop``)."""
        self._stop.set()

    def __call__(self, row: dict) -> None:
        self.stats.add_chunk(row)
        with self._lock:
            due = time.monotonic() - self._last >= self.interval
            if due:
                self._last = time.monotonic()
        if due:
            self._send("running")

    def finish(self, summary: Any = None, error: BaseException | None = None,
               ratios: dict[str, float | None] | None = None, terminated: bool = False) -> Heartbeat:
        """The final heartbeat: success criteria judged, then ``succeeded``, ``failed`` or ``stopped``."""
        self._done.set()
        final = conclude(self.cfg, self.stats, summary, error, ratios, terminated)
        self._send(final.state, error=final.error, summary=final.summary, success=final.success)
        return final


class RunHooks:
    """What ``cdp-ray run`` and ``jobs/backfill.py`` put around ``run_pipeline``: chunk stats, reporting to
    a control plane when ``url`` is given (registered as a new pipeline; a heartbeat after a chunk at most
    every ``$CDP_RAY_HEARTBEAT_INTERVAL`` seconds, default 1), stop requests, and at the end the
    pipeline's success criteria (the estimate criterion from a local estimate)."""

    def __init__(self, cfg: PipelineConfig, *, url: str | None = None, token: str | None = None,
                 on_chunk: Any = None, job_id: str | None = None, keepalive: float | None = 10.0):
        self.cfg, self.user_on_chunk = cfg, on_chunk
        self.reporter: Reporter | None = None
        self.stats = RunStats(cfg)
        self.pipeline_id: str | None = None
        if url:
            client = ControlClient(url, token=token)
            self.pipeline_id = client.register(cfg, job_id=job_id)["id"]
            interval = float(os.environ.get("CDP_RAY_HEARTBEAT_INTERVAL", "1"))
            self.reporter = Reporter(client, self.pipeline_id, cfg, interval=interval, keepalive=keepalive)
            self.stats = self.reporter.stats

    def on_chunk(self, row: dict) -> None:
        if self.user_on_chunk is not None:
            self.user_on_chunk(row)
        if self.reporter is not None:
            self.reporter(row)
        else:
            self.stats.add_chunk(row)

    def should_stop(self) -> bool:
        return self.reporter is not None and self.reporter.should_stop()

    def request_stop(self) -> None:
        if self.reporter is not None:
            self.reporter.request_stop()

    def finish(self, summary: Any = None, error: BaseException | None = None) -> Heartbeat:
        """The run's end, judged and (when reporting) reported."""
        ratios = _local_ratios(self.cfg, self.stats) if error is None and self.cfg.success and \
            self.cfg.success.estimate_within else None
        if self.reporter is not None:
            return self.reporter.finish(summary, error, ratios)
        return conclude(self.cfg, self.stats, summary, error, ratios)


def _local_ratios(cfg: PipelineConfig, stats: RunStats) -> dict[str, float | None] | None:
    """Actual / estimate from an estimate made here with the tool cards (what ``cdp-ray estimate`` prints)."""
    from cdp_ray.control.estimate import compare, estimate
    from cdp_ray.control.settings import ControlSettings
    from cdp_ray.control.toolcards import current_cards

    try:
        settings = ControlSettings.load()
        est = estimate(cfg, current_cards(settings.toolcards_dir), settings.rates, default_workers=settings.default_workers)
    except CdpRayError:
        return None
    return compare(est, stats.snapshot())


def run_reported(cfg: PipelineConfig, client: ControlClient, pipeline_id: str, *, interval: float = 1.0):
    """Run ``cfg`` with ``run_pipeline`` and report its progress as ``pipeline_id``. A SIGTERM (``ray job
    stop``, or ``stop_job`` from a forced stop) ends the run ``stopped``: Ray's driver turns it into
    ``SystemExit``, so chunks in flight are abandoned (each sink commit is atomic) and ``--resume`` redoes them."""
    import signal

    from cdp_ray.pipeline.runner import run_pipeline

    reporter = Reporter(client, pipeline_id, cfg, interval=interval)
    if threading.current_thread() is threading.main_thread():  # as Ray's driver does, for the local engine too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(signal.SIGTERM))
    try:
        summary = run_pipeline(cfg, on_chunk=reporter, should_stop=reporter.should_stop)
    except SystemExit as exc:
        reporter.finish(error=None if exc.code == signal.SIGTERM else exc, terminated=exc.code == signal.SIGTERM)
        raise
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
