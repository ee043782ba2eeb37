"""The control plane's HTTP API as a FastAPI application (served by Ray Serve or plain uvicorn).

Discovery: ``GET /tools``, ``GET /tools/{id}``, ``POST /tools/{id}/preview``, ``GET /llms.txt``,
``GET /openapi.json``. Plans: ``POST /plans``, ``GET /plans[/{id}]``, ``POST /plans/{id}/approve``,
``/reject``, ``/apply``, ``GET /plans/{id}/audit``, ``POST /webhooks/approval``. Pipelines:
``POST /pipelines`` (register), ``POST /pipelines/{id}/heartbeat``, ``GET /pipelines``,
``GET /pipelines/{id}/status``, ``GET /pipelines/{id}/events`` (SSE). Operations: ``GET /health``,
``GET /metrics`` (Prometheus), ``GET /policies``, ``GET /audit``, ``POST /estimate``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import urllib.request
from decimal import Decimal
from typing import Any, Callable

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

import cdp_ray
from cdp_ray.control import telemetry
from cdp_ray.control.auth import Authenticator, Principal, bearer, sign, verify_signature
from cdp_ray.control.estimate import Estimate
from cdp_ray.control.execute import LocalExecutor, RayJobExecutor
from cdp_ray.control.plans import Plan, PlanConflict, PlanNotFound, PlanRequest, PlanService, parse_desired
from cdp_ray.control.policies import load_policies
from cdp_ray.control.settings import ControlSettings
from cdp_ray.control.stats import Heartbeat, Registration, StatsHub
from cdp_ray.control.store import Store
from cdp_ray.control.toolcards import ToolCard, current_cards
from cdp_ray.errors import CdpRayError, ConfigError

PREVIEW_MAX_LEDGERS = 10


class Decision(BaseModel):
    comment: str = ""


class WebhookDecision(BaseModel):
    """An approval decision posted by a chat bot or ticketing system, signed with the shared secret."""

    plan_id: str
    decision: str = Field(pattern="^(approve|reject)$")
    by: str = Field(description="who decided, recorded in the audit trail")
    comment: str = ""


class PreviewRequest(BaseModel):
    """Run one processor over a few ledgers and return its rows (read-only, nothing written)."""

    source: dict[str, Any] = Field(description="LakeSource document; at most 10 ledgers")
    config: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(100, ge=1, le=10_000, description="rows returned at most")


def _error_status(exc: CdpRayError) -> int:
    if isinstance(exc, PlanNotFound):
        return 404
    if isinstance(exc, PlanConflict):
        return 409
    if isinstance(exc, ConfigError):
        return 422
    return 400


def render_llms_txt(cards: dict[str, ToolCard], base_url: str = "") -> str:
    """``llms.txt``: what an LLM agent needs to use this control plane, generated from the cards."""
    lines = [
        "# cdp-ray control plane",
        "",
        "> Batch analytics over Stellar ledgers on Ray. Every source, processor and sink is a tool with a",
        "> card (config JSON Schema, output schema, cost hints, danger level, scopes). Changes go through",
        "> plan -> (approve) -> apply; policies are checked at both steps and everything is audited.",
        "",
        "## Workflow",
        f"- `GET {base_url}/tools`: all tool cards; `GET {base_url}/tools/{{id}}`: one card.",
        f"- `POST {base_url}/tools/processor.<name>/preview` with a source of at most {PREVIEW_MAX_LEDGERS} ledgers: rows, nothing written (scope read).",
        f"- `POST {base_url}/plans` `{{\"desired\": <pipeline>, \"current\": <pipeline or null>}}`: diff, checks, policy verdict, estimate (scope plan).",
        f"- `POST {base_url}/plans/{{id}}/approve` when `status` is `pending_approval` (scope approve).",
        f"- `POST {base_url}/plans/{{id}}/apply` when `status` is `ready` or `approved` (scope apply): returns `pipeline_id`.",
        f"- `GET {base_url}/pipelines/{{id}}/status` or the SSE stream `GET {base_url}/pipelines/{{id}}/events` until `succeeded`/`failed`.",
        f"- `GET {base_url}/openapi.json`: the full API.",
        "",
        "A pipeline document: `{\"name\": ..., \"source\": <source.lake config>, \"processors\": [<name> or "
        "{\"name\": ..., \"config\": {...}}], \"sinks\": [<sink config>], \"options\": {\"ledgers_per_task\": 64, \"workers\": null}}`.",
        "",
    ]
    for kind, title in (("source", "Sources"), ("processor", "Processors"), ("sink", "Sinks")):
        lines += [f"## {title}", ""]
        for card in (c for c in cards.values() if c.kind == kind):
            hint = ""
            if card.cost and "rows_per_ledger" in card.cost:
                hint = f" (~{card.cost['rows_per_ledger']} rows/ledger)"
            first = card.description.split(". ")[0].rstrip(".")
            lines.append(f"- [{card.id}]({base_url}/tools/{card.id}): {first}{hint}. danger: {card.danger}")
        lines.append("")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _post_json(url: str, doc: dict[str, Any], secret: str | None) -> None:
    body = json.dumps(doc, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if secret:
        req.add_header("X-CDP-Signature", sign(secret, body))
    with contextlib.suppress(OSError):
        urllib.request.urlopen(req, timeout=5).close()


def create_app(settings: ControlSettings | None = None, *, executor: Any = None) -> FastAPI:
    """Build the app: open the store, load policies and tool cards, pick the executor."""
    settings = settings or ControlSettings.load()
    telemetry.configure(settings.tracing)
    store = Store(settings.database)
    hub = StatsHub(store, settings.heartbeat_timeout_seconds)
    cards = current_cards(settings.toolcards_dir)
    rules = load_policies(settings.policies_dir)
    auth = Authenticator(settings.tokens)
    if executor is None:
        executor = (RayJobExecutor(hub, settings.ray_address, settings.public_url) if settings.ray_address
                    else LocalExecutor(hub, settings.max_concurrent_runs))

    def notify(plan: Plan) -> None:
        if settings.webhook_url:
            doc = {"event": "plan.pending_approval", "plan_id": plan.id, "created_by": plan.created_by,
                   "pipeline": plan.desired.get("name"), "estimate": plan.estimate.model_dump(mode="json"),
                   "reasons": [r.message for r in plan.policy.results if r.outcome == "approval"]}
            threading.Thread(target=_post_json, args=(settings.webhook_url, doc, settings.webhook_secret),
                             daemon=True).start()

    service = PlanService(store, settings, cards, rules, executor.submit, notify)
    cards_json = json.dumps([c.model_dump(mode="json") for c in cards.values()]).encode()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        executor.shutdown()
        store.close()

    app = FastAPI(
        title="cdp-ray control plane",
        version=cdp_ray.__version__,
        description="Discover tools, plan and apply pipelines under policies, and watch them run.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.store, app.state.hub, app.state.service = settings, store, hub, service
    app.state.cards, app.state.rules, app.state.executor = cards, rules, executor

    def need(scope: str) -> Callable[[Request], Principal]:
        def dep(request: Request) -> Principal:
            try:
                return auth.require(request, scope)
            except HTTPException as exc:
                if scope != "read":  # refused changes are part of the audit trail
                    who = auth.principal(request)
                    store.audit(who.name if who else "unauthenticated", f"auth.{scope}", request.url.path,
                                "refused", {"status": exc.status_code, "method": request.method})
                raise

        dep.__name__ = f"require_{scope}"
        return dep

    @app.exception_handler(CdpRayError)
    async def _cdp_error(_: Request, exc: CdpRayError) -> JSONResponse:
        return JSONResponse(status_code=_error_status(exc),
                            content={"detail": {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}})

    # ---- operations ----------------------------------------------------------------------

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, Any]:
        """Liveness and a summary of what the control plane holds."""
        return {"ok": True, "version": cdp_ray.__version__, "store": store.kind, "executor": executor.kind,
                "tools": len(cards), "policies": len(rules), "auth": auth.enabled}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text exposition: pipelines by state, per-component counters, chunk latency."""
        return PlainTextResponse(hub.prometheus(store.plan_counts()), media_type="text/plain; version=0.0.4")

    @app.get("/policies", tags=["operations"])
    def policies(_: Principal = Depends(need("read"))) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in rules]

    @app.get("/audit", tags=["operations"])
    def audit(subject: str | None = None, action: str | None = None, limit: int = 500,
              _: Principal = Depends(need("read"))) -> list[dict[str, Any]]:
        return store.audit_log(subject=subject, action=action, limit=limit)

    # ---- discovery -----------------------------------------------------------------------

    @app.get("/tools", tags=["tools"], response_model=list[ToolCard])
    def tools(_: Principal = Depends(need("read"))) -> Response:
        """Every tool card: sources, processors and sinks."""
        return Response(cards_json, media_type="application/json")

    @app.get("/tools/{tool_id}", tags=["tools"], response_model=ToolCard)
    def tool(tool_id: str, _: Principal = Depends(need("read"))) -> ToolCard:
        if tool_id not in cards:
            raise HTTPException(404, detail={"error": "UnknownTool", "message": f"no tool {tool_id!r}",
                                             "hint": f"known tools: {', '.join(cards)}"})
        return cards[tool_id]

    @app.post("/tools/{tool_id}/preview", tags=["tools"])
    def preview(tool_id: str, req: PreviewRequest, _: Principal = Depends(need("read"))) -> dict[str, Any]:
        """Run a processor over at most 10 ledgers in this process and return its first rows."""
        from cdp_ray.pipeline.config import PipelineConfig, ProcessorStep
        from cdp_ray.pipeline.runner import process_local

        card = tool(tool_id)
        if card.kind != "processor":
            raise HTTPException(400, detail={"error": "NotPreviewable", "message": f"{tool_id} is a {card.kind}",
                                             "hint": "preview processors; plan pipelines to use sources and sinks"})
        cfg = parse_desired({"source": req.source, "processors": [{"name": card.name, "config": req.config}]})
        n = cfg.source.end - cfg.source.start + 1
        if n > PREVIEW_MAX_LEDGERS:
            raise ConfigError(f"preview covers at most {PREVIEW_MAX_LEDGERS} ledgers; got {n}",
                              hint="narrow the range, or plan a pipeline for more")
        with telemetry.span("tool.preview", tool=tool_id, ledgers=n):
            table = process_local(PipelineConfig(source=cfg.source, processors=[ProcessorStep(name=card.name, config=req.config)]))[card.name]
        return {"tool": tool_id, "ledgers": n, "num_rows": table.num_rows,
                "rows": _jsonable(table.slice(0, req.limit).to_pylist())}

    @app.get("/llms.txt", tags=["tools"], response_class=PlainTextResponse)
    def llms_txt(request: Request) -> PlainTextResponse:
        return PlainTextResponse(render_llms_txt(cards, str(request.base_url).rstrip("/")))

    # ---- plans ---------------------------------------------------------------------------

    @app.post("/estimate", tags=["plans"], response_model=Estimate)
    def estimate(desired: dict[str, Any] | str = Body(..., embed=True), _: Principal = Depends(need("read"))) -> Estimate:
        """Cost and time estimate of a pipeline, without creating a plan."""
        return service.estimate(parse_desired(desired))

    @app.post("/plans", tags=["plans"], status_code=201)
    def create_plan(req: PlanRequest, who: Principal = Depends(need("plan"))) -> dict[str, Any]:
        """Diff, safety checks, policy verdict and estimate for a desired pipeline."""
        return service.create(req, who.name).public()

    @app.get("/plans", tags=["plans"])
    def list_plans(limit: int = 100, _: Principal = Depends(need("read"))) -> list[dict[str, Any]]:
        """The newest plans first."""
        return [p.public() for p in service.list(limit)]

    @app.get("/plans/{plan_id}", tags=["plans"])
    def get_plan(plan_id: str, _: Principal = Depends(need("read"))) -> dict[str, Any]:
        return service.get(plan_id).public()

    @app.get("/plans/{plan_id}/audit", tags=["plans"])
    def plan_audit(plan_id: str, _: Principal = Depends(need("read"))) -> list[dict[str, Any]]:
        service.get(plan_id)
        return store.audit_log(subject=plan_id)

    @app.post("/plans/{plan_id}/approve", tags=["plans"])
    def approve(plan_id: str, body: Decision | None = None, who: Principal = Depends(need("approve"))) -> dict[str, Any]:
        return service.decide(plan_id, who.name, "approve", (body or Decision()).comment).public()

    @app.post("/plans/{plan_id}/reject", tags=["plans"])
    def reject(plan_id: str, body: Decision | None = None, who: Principal = Depends(need("approve"))) -> dict[str, Any]:
        return service.decide(plan_id, who.name, "reject", (body or Decision()).comment).public()

    @app.post("/plans/{plan_id}/apply", tags=["plans"], status_code=202)
    def apply(plan_id: str, request: Request, who: Principal = Depends(need("apply"))) -> dict[str, Any]:
        """Run the planned pipeline; 409 unless the plan is ready/approved, unexpired and allowed now."""
        out = service.apply(plan_id, who.name)
        base = str(request.base_url).rstrip("/")
        pid = out["pipeline_id"]
        return {**out, "status_url": f"{base}/pipelines/{pid}/status", "events_url": f"{base}/pipelines/{pid}/events"}

    @app.post("/webhooks/approval", tags=["plans"])
    async def approval_webhook(request: Request) -> dict[str, Any]:
        """Approve or reject from an external system; the body is signed with ``webhook_secret``."""
        if not settings.webhook_secret:
            raise HTTPException(404, detail={"error": "NotConfigured", "message": "approval webhooks are off",
                                             "hint": "set webhook_secret to enable them"})
        body = await request.body()
        if not verify_signature(settings.webhook_secret, body, request.headers.get("x-cdp-signature")):
            raise HTTPException(401, detail={"error": "BadSignature", "message": "X-CDP-Signature does not match",
                                             "hint": "sign the raw body: sha256=HMAC_SHA256(secret, body) in hex"})
        d = WebhookDecision.model_validate_json(body)
        return service.decide(d.plan_id, f"webhook:{d.by}", d.decision, d.comment).public()  # type: ignore[arg-type]

    # ---- pipelines -----------------------------------------------------------------------

    def reporter(request: Request, pipeline_id: str) -> None:
        """Heartbeats need the pipeline's report token or a token with the apply scope."""
        doc = store.get_pipeline(pipeline_id)
        if doc is None:
            raise HTTPException(404, detail={"error": "UnknownPipeline", "message": f"no pipeline {pipeline_id!r}",
                                             "hint": "register it with POST /pipelines first"})
        token = bearer(request)
        expected = doc.get("report_token_sha256")
        if expected and token and hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest()):
            return
        auth.require(request, "apply")

    @app.post("/pipelines", tags=["pipelines"], status_code=201)
    def register(reg: Registration, _: Principal = Depends(need("apply"))) -> dict[str, Any]:
        """A pipeline running elsewhere announces itself; heartbeats follow."""
        parse_desired(reg.pipeline, "pipeline")
        pid = reg.id or "pl-" + secrets.token_hex(6)
        existing = store.get_pipeline(pid)
        if existing is not None:
            return hub.public(existing)
        return hub.public(hub.register({"id": pid, "name": reg.name, "plan_id": reg.plan_id, "executor": reg.executor,
                                        "job_id": reg.job_id, "pipeline": reg.pipeline,
                                        "outputs": reg.pipeline.get("sinks", [])}))

    @app.post("/pipelines/{pipeline_id}/heartbeat", tags=["pipelines"])
    def heartbeat(pipeline_id: str, hb: Heartbeat, request: Request) -> dict[str, Any]:
        reporter(request, pipeline_id)
        doc = hub.heartbeat(pipeline_id, hb)
        return {"id": pipeline_id, "state": doc["state"] if doc else None}

    @app.get("/pipelines", tags=["pipelines"])
    def pipelines(_: Principal = Depends(need("read"))) -> list[dict[str, Any]]:
        return [{k: d.get(k) for k in ("id", "name", "plan_id", "state", "executor", "created_at", "updated_at")}
                | {"progress": (d.get("stats") or {}).get("progress")} for d in hub.list()]

    @app.get("/pipelines/{pipeline_id}/status", tags=["pipelines"])
    def status(pipeline_id: str, _: Principal = Depends(need("read"))) -> dict[str, Any]:
        doc = hub.get(pipeline_id)
        if doc is None:
            raise HTTPException(404, detail={"error": "UnknownPipeline", "message": f"no pipeline {pipeline_id!r}",
                                             "hint": "list pipelines with GET /pipelines"})
        return doc

    @app.get("/pipelines/{pipeline_id}/events", tags=["pipelines"])
    def events(pipeline_id: str, _: Principal = Depends(need("read"))) -> StreamingResponse:
        """Server-sent events: `progress` on every heartbeat, `end` when the run finishes."""
        status(pipeline_id)
        return StreamingResponse(hub.events(pipeline_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
