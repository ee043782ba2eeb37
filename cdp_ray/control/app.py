"""The control plane's HTTP API as a FastAPI application (served by Ray Serve or plain uvicorn).

Discovery: ``GET /tools``, ``GET /tools/{id}``, ``POST /tools/{id}/preview``, ``GET /llms.txt``,
``GET /openapi.json``. Plans: ``POST /plans``, ``GET /plans[/{id}]``, ``POST /plans/{id}/approve``,
``/reject``, ``/apply``, ``GET /plans/{id}/audit``, ``POST /webhooks/approval``. Pipelines:
``POST /pipelines`` (register), ``POST /pipelines/{id}/heartbeat``, ``POST /pipelines/{id}/credentials``,
``POST /pipelines/{id}/stop``, ``GET /pipelines``, ``GET /pipelines/{id}/status``, ``/checkpoints``,
``/events`` and ``/logs`` (server-sent events). Operations: ``GET /health``, ``GET /metrics``
(Prometheus/OpenMetrics), ``GET /policies``, ``GET /audit``, ``POST /estimate``. Agents: ``/mcp``
(Model Context Protocol, streamable HTTP; :mod:`cdp_ray.control.mcp`).

Every route but ``/health``, ``/openapi.json``, ``/docs``, ``/redoc`` and the signed approval webhook
needs a bearer token with the route's scope (``/metrics`` can be made public); errors are JSON
``{"detail": {"error", "message", "hint"}}``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hmac
import json
import secrets
import threading
import urllib.request
from decimal import Decimal
from typing import Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request, Security
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, SecurityScopes
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.exposition import generate_latest
from pydantic import BaseModel, Field, ValidationError
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

import cdp_ray
from cdp_ray.control import mcp, telemetry
from cdp_ray.control.auth import (Authenticator, Principal, bearer_scheme, check_signature, digest, sign, token_of,
                                  unauthorized)
from cdp_ray.control.errors import LocationNotAllowed, PreviewTooLarge, http_status
from cdp_ray.control.estimate import Estimate
from cdp_ray.control.execute import LocalExecutor, RayJobExecutor
from cdp_ray.control.limits import BodyLimit, check_size
from cdp_ray.control.locations import root_location, source_location
from cdp_ray.control.plans import Plan, PlanRequest, PlanService, parse_desired
from cdp_ray.control.policies import AllowedRoots, load_policies
from cdp_ray.control.secrets import Credentials, credential_names, redact, redact_text
from cdp_ray.control.settings import ControlSettings
from cdp_ray.control.stats import TERMINAL, Heartbeat, HeartbeatReply, Registration, StatsHub
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


class StopRequest(BaseModel):
    """Stop a running pipeline: no chunk starts after the run sees the request; those in flight commit."""

    force: bool = Field(False, description="a Ray job: stop it through the dashboard now (its chunks in flight are "
                        "abandoned, each either committed or not) instead of after `stop_grace_seconds`")
    comment: str = Field("", max_length=1000)


SSE_PING_SECONDS = 15


class PreviewRequest(BaseModel):
    """Run one processor over a few ledgers and return its rows (read-only, nothing written)."""

    source: dict[str, Any] = Field(description="LakeSource document; at most 10 ledgers")
    config: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(100, ge=1, le=10_000, description="rows returned at most")


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
        f"- `GET {base_url}/pipelines/{{id}}/status` or the SSE stream `GET {base_url}/pipelines/{{id}}/events` until `succeeded`/`failed`/`stopped`; "
        f"`GET {base_url}/pipelines/{{id}}/logs`: its warnings and errors (SSE).",
        f"- `POST {base_url}/pipelines/{{id}}/stop` (scope apply): no chunk starts after it, committed ranges stay; resume later.",
        f"- MCP: the same tools over the Model Context Protocol at `{base_url}/mcp` (streamable HTTP, same token).",
        f"- `GET {base_url}/openapi.json`: the full API, with the scope each route needs.",
        "",
        "Send `Authorization: Bearer <token>`. Secrets never go in a pipeline: write `${credential:NAME}` "
        "for a credential the control plane holds; `${VAR}` is not expanded.",
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
    for name, value in (sign(secret, body) if secret else {}).items():
        req.add_header(name, value)
    with contextlib.suppress(OSError):
        urllib.request.urlopen(req, timeout=5).close()


def _not_previewable(message: str, hint: str) -> HTTPException:
    return HTTPException(400, detail={"error": "NotPreviewable", "message": message, "hint": hint})


def create_app(settings: ControlSettings | None = None, *, executor: Any = None) -> FastAPI:
    """Build the app: open the store, load policies and tool cards, pick the executor."""
    settings = settings or ControlSettings.load()
    telemetry.configure(settings.tracing)
    store = Store(settings.database)
    hub = StatsHub(store, settings.heartbeat_timeout_seconds, metrics_retention=settings.metrics_retention_seconds)
    cards = current_cards(settings.toolcards_dir)
    rules = load_policies(settings.policies_dir)
    auth = Authenticator(settings.tokens)

    def notify(plan: Plan) -> None:
        if settings.webhook_url:
            doc = {"event": "plan.pending_approval", "plan_id": plan.id, "created_by": plan.created_by,
                   "pipeline": plan.desired.get("name"), "estimate": plan.estimate.model_dump(mode="json"),
                   "reasons": [r.message for r in plan.policy.results if r.outcome == "approval"]}
            threading.Thread(target=_post_json, args=(settings.webhook_url, doc, settings.webhook_secret),
                             daemon=True).start()

    if executor is None:
        credentials = Credentials(settings.credentials)
        executor = (RayJobExecutor(hub, settings.ray_address, settings.public_url, credentials=credentials,
                                   stop_grace_seconds=settings.stop_grace_seconds)
                    if settings.ray_address else LocalExecutor(hub, settings.max_concurrent_runs, credentials=credentials))
    service = PlanService(store, settings, cards, rules, executor.submit, notify)
    cards_json = json.dumps([c.model_dump(mode="json") for c in cards.values()]).encode()
    source_rules = [r for r in rules if isinstance(r, AllowedRoots) and r.applies_to == "sources" and r.mode == "block"]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        async with mcp_endpoint.running():
            yield
        executor.shutdown()
        store.close()

    app = FastAPI(
        title="cdp-ray control plane",
        version=cdp_ray.__version__,
        description="Discover tools, plan and apply pipelines under policies, and watch them run. Every route "
        "but /health, the API docs and the signed approval webhook needs a bearer token with the scope it lists.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    telemetry.instrument(app)
    app.state.settings, app.state.store, app.state.hub, app.state.service = settings, store, hub, service
    app.state.cards, app.state.rules, app.state.executor = cards, rules, executor

    def authorize(security_scopes: SecurityScopes, request: Request,
                  creds: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Principal:
        """The caller, holding the route's scopes; refused changes are part of the audit trail."""
        token = token_of(creds)
        try:
            return auth.require(token, security_scopes.scopes)
        except HTTPException as exc:
            if set(security_scopes.scopes) - {"read"}:
                who = auth.principal(token)
                store.audit(who.name if who else "unauthenticated", f"auth.{'+'.join(security_scopes.scopes)}",
                            request.url.path, "refused", {"status": exc.status_code, "method": request.method})
            raise

    def read() -> Any:
        return Security(authorize, scopes=["read"])

    def report_token_holder(pipeline_id: str, creds: HTTPAuthorizationCredentials | None) -> dict[str, Any] | None:
        """The pipeline's stored document when ``creds`` is its report token."""
        doc = store.get_pipeline(pipeline_id)
        token, expected = token_of(creds), (doc or {}).get("report_token_sha256")
        return doc if expected and token and hmac.compare_digest(expected, digest(token)) else None

    @app.exception_handler(CdpRayError)
    async def _cdp_error(_: Request, exc: CdpRayError) -> JSONResponse:
        return JSONResponse(status_code=http_status(exc), content={"detail": {
            "error": type(exc).__name__, "message": redact_text(exc.message), "hint": exc.hint}})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": {
            "error": type(exc).__name__, "message": redact_text(str(exc)),
            "hint": "an unexpected error in the control plane; its log has the traceback"}})

    # ---- operations ----------------------------------------------------------------------

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, Any]:
        """Liveness and a summary of what the control plane holds (open: no token needed)."""
        return {"ok": True, "version": cdp_ray.__version__, "store": store.kind, "executor": executor.kind,
                "tools": len(cards), "policies": len(rules), "auth": auth.enabled}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
             dependencies=[] if settings.public_metrics else [read()])
    def metrics(accept: str = Header("", include_in_schema=False)) -> Response:
        """Prometheus text exposition (OpenMetrics when the scraper accepts it): pipelines by state, plans by
        status, per-component counters by pipeline name, a chunk-duration histogram, success checks."""
        hub.metrics.expire()
        if "application/openmetrics-text" in accept:
            return Response(openmetrics_latest(hub.metrics.registry), media_type=OPENMETRICS)
        return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/policies", tags=["operations"], dependencies=[read()])
    def policies() -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in rules]

    @app.get("/audit", tags=["operations"], dependencies=[read()])
    def audit(subject: str | None = None, action: str | None = None,
              limit: int = Query(500, ge=1, le=1000)) -> list[dict[str, Any]]:
        return redact(store.audit_log(subject=subject, action=action, limit=limit))

    # ---- discovery -----------------------------------------------------------------------

    def card_of(tool_id: str) -> ToolCard:
        if tool_id not in cards:
            raise HTTPException(404, detail={"error": "UnknownTool", "message": f"no tool {tool_id!r}",
                                             "hint": f"known tools: {', '.join(cards)}"})
        return cards[tool_id]

    @app.get("/tools", tags=["tools"], response_model=list[ToolCard], dependencies=[read()])
    def tools() -> Response:
        """Every tool card: sources, processors and sinks."""
        return Response(cards_json, media_type="application/json")

    @app.get("/tools/{tool_id}", tags=["tools"], response_model=ToolCard, dependencies=[read()])
    def tool(tool_id: str) -> ToolCard:
        return card_of(tool_id)

    def preview_location_allowed(cfg: Any) -> None:
        """A preview reads only where policies let sources read; with no such policy, local lakes
        inside the data directory and remote ones."""
        if source_rules:
            bad = [m for r in source_rules for m in r.misplaced(cfg, service.data_dir, lambda text: text)]
        else:
            loc = source_location(cfg.source)
            bad = [str(loc)] if loc.kind == "local" and not loc.within(root_location(".", service.data_dir)) else []
        if bad:
            raise LocationNotAllowed(f"preview may not read {bad[0]}")

    @app.post("/tools/{tool_id}/preview", tags=["tools"], dependencies=[read()])
    def preview(tool_id: str, req: PreviewRequest) -> dict[str, Any]:
        """Run a processor over at most 10 ledgers of a SEP-54 lake in this process and return its first
        rows; the objects read are bounded by ``preview_max_bytes``."""
        from cdp_ray.pipeline.runner import process_local

        card = card_of(tool_id)
        if card.kind != "processor":
            raise _not_previewable(f"{tool_id} is a {card.kind}", "preview processors; plan pipelines to use sources and sinks")
        cfg = service.admit({"source": req.source, "processors": [{"name": card.name, "config": req.config}]}, "preview")
        src = cfg.source
        n = src.end - src.start + 1
        if n > PREVIEW_MAX_LEDGERS:
            raise ConfigError(f"preview covers at most {PREVIEW_MAX_LEDGERS} ledgers; got {n}",
                              hint="narrow the range, or plan a pipeline for more")
        lake_only = ("preview reads SEP-54 lakes only (objects at keys computed from the range, never a listing)",
                     "point source.uri at a lake root (with .config.json), or plan a pipeline for other sources")
        if src.layout == "files":
            raise _not_previewable(*lake_only)
        if credential_names(src.model_dump(mode="json")):
            raise _not_previewable("a preview never uses the control plane's credentials",
                                   "preview a public or local lake, or plan a pipeline (its credentials are used after approval)")
        preview_location_allowed(cfg)
        lake = src.open()
        if lake.layout != "lake":
            raise _not_previewable(f"{src.uri} is not a SEP-54 lake: " + lake_only[0], lake_only[1])
        size = 0
        for key in lake.keys_for_range(src.start, src.end):
            with contextlib.suppress(FileNotFoundError):  # a missing ledger is reported by the run below
                size += lake.fs.size(f"{lake.root}/{key}")
        if size > settings.preview_max_bytes:
            raise PreviewTooLarge(f"preview would read {size} bytes, over the limit of {settings.preview_max_bytes} bytes")
        lake_cfg = cfg.model_copy(update={"source": src.model_copy(update={"layout": "lake"})})
        with telemetry.span("tool.preview", tool=tool_id, ledgers=n):
            table = process_local(lake_cfg)[card.name]
        return {"tool": tool_id, "ledgers": n, "num_rows": table.num_rows,
                "rows": _jsonable(table.slice(0, req.limit).to_pylist())}

    @app.get("/llms.txt", tags=["tools"], response_class=PlainTextResponse, dependencies=[read()])
    def llms_txt(request: Request) -> PlainTextResponse:
        return PlainTextResponse(render_llms_txt(cards, str(request.base_url).rstrip("/")))

    # ---- plans ---------------------------------------------------------------------------

    @app.post("/estimate", tags=["plans"], response_model=Estimate, dependencies=[read()])
    def estimate(desired: dict[str, Any] | str = Body(..., embed=True)) -> Estimate:
        """Cost and time estimate of a pipeline, without creating a plan."""
        return service.estimate(service.admit(desired))

    @app.post("/plans", tags=["plans"], status_code=201)
    def create_plan(req: PlanRequest, who: Principal = Security(authorize, scopes=["plan"])) -> dict[str, Any]:
        """Diff, safety checks, policy verdict and estimate for a desired pipeline."""
        return service.create(req, who.name).public()

    @app.get("/plans", tags=["plans"], dependencies=[read()])
    def list_plans(limit: int = Query(20, ge=1, le=100),
                   before: str | None = Query(None, description="`created_at` of the last plan of the previous page")
                   ) -> list[dict[str, Any]]:
        """The newest plans first, a page at a time."""
        return [p.public() for p in service.list(limit, before)]

    @app.get("/plans/{plan_id}", tags=["plans"], dependencies=[read()])
    def get_plan(plan_id: str) -> dict[str, Any]:
        return service.get(plan_id).public()

    @app.get("/plans/{plan_id}/audit", tags=["plans"], dependencies=[read()])
    def plan_audit(plan_id: str) -> list[dict[str, Any]]:
        service.get(plan_id)
        return redact(store.audit_log(subject=plan_id))

    @app.post("/plans/{plan_id}/approve", tags=["plans"])
    def approve(plan_id: str, body: Decision | None = None,
                who: Principal = Security(authorize, scopes=["approve"])) -> dict[str, Any]:
        return service.decide(plan_id, who.name, "approve", (body or Decision()).comment).public()

    @app.post("/plans/{plan_id}/reject", tags=["plans"])
    def reject(plan_id: str, body: Decision | None = None,
               who: Principal = Security(authorize, scopes=["approve"])) -> dict[str, Any]:
        return service.decide(plan_id, who.name, "reject", (body or Decision()).comment).public()

    @app.post("/plans/{plan_id}/apply", tags=["plans"], status_code=202)
    def apply(plan_id: str, request: Request, who: Principal = Security(authorize, scopes=["apply"])) -> dict[str, Any]:
        """Run the planned pipeline; 409 unless the plan is ready/approved, unexpired and allowed now;
        502/503 (the plan stays unapplied) when the run cannot start."""
        out = service.apply(plan_id, who.name)
        base = str(request.base_url).rstrip("/")
        pid = out["pipeline_id"]
        return {**out, "status_url": f"{base}/pipelines/{pid}/status", "events_url": f"{base}/pipelines/{pid}/events"}

    @app.post("/webhooks/approval", tags=["plans"])
    async def approval_webhook(request: Request) -> dict[str, Any]:
        """Approve or reject from an external system. Open, but signed with ``webhook_secret``:
        ``X-CDP-Timestamp`` (unix seconds) and ``X-CDP-Signature: sha256=HMAC(secret, "<timestamp>." + body)``;
        stale timestamps and replayed signatures are refused."""
        secret = settings.webhook_secret
        if not secret:
            raise HTTPException(404, detail={"error": "NotConfigured", "message": "approval webhooks are off",
                                             "hint": "set webhook_secret to enable them"})
        body = await request.body()
        ts, sig = request.headers.get("x-cdp-timestamp"), request.headers.get("x-cdp-signature")
        why = check_signature(secret, body, ts, sig, settings.webhook_tolerance_seconds)
        if why:
            raise HTTPException(401, detail={"error": "BadSignature", "message": why,
                                             "hint": 'sign "<X-CDP-Timestamp>." + body: sha256=HMAC_SHA256(secret, ...) in hex'})
        try:
            d = WebhookDecision.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(422, detail={"error": "InvalidDecision", "message": str(exc).splitlines()[0],
                                             "hint": 'send {"plan_id", "decision": "approve"|"reject", "by", "comment"}'}) from None
        expires = dt.datetime.fromtimestamp(int(ts) + settings.webhook_tolerance_seconds + 1, dt.timezone.utc)  # type: ignore[arg-type]
        if not await run_in_threadpool(store.first_use, f"webhook:{sig}", expires.isoformat()):
            raise HTTPException(409, detail={"error": "WebhookReplayed", "message": "this signed request was already received",
                                             "hint": "sign each decision with a fresh timestamp"})
        plan = await run_in_threadpool(service.decide, d.plan_id, f"webhook:{d.by}", d.decision, d.comment)
        return plan.public()

    # ---- pipelines -----------------------------------------------------------------------

    def reporter(pipeline_id: str, security_scopes: SecurityScopes, request: Request,
                 creds: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Principal:
        """Heartbeats need the pipeline's report token or a token with the apply scope."""
        if report_token_holder(pipeline_id, creds) is not None:
            return Principal(f"pipeline:{pipeline_id}", frozenset())
        who = authorize(security_scopes, request, creds)
        if store.get_pipeline(pipeline_id) is None:
            raise HTTPException(404, detail={"error": "UnknownPipeline", "message": f"no pipeline {pipeline_id!r}",
                                             "hint": "register it with POST /pipelines first"})
        return who

    @app.post("/pipelines", tags=["pipelines"], status_code=201)
    def register(reg: Registration, _: Principal = Security(authorize, scopes=["apply"])) -> dict[str, Any]:
        """A pipeline running elsewhere announces itself; heartbeats follow. Secrets in its document are redacted."""
        check_size(reg.pipeline, settings.max_document_bytes, "pipeline")
        parse_desired(reg.pipeline, "pipeline")
        pid = reg.id or "pl-" + secrets.token_hex(6)
        existing = store.get_pipeline(pid)
        if existing is not None:
            return hub.public(existing)
        return hub.public(hub.register({"id": pid, "name": reg.name, "plan_id": reg.plan_id, "executor": reg.executor,
                                        "job_id": reg.job_id, "pipeline": reg.pipeline,
                                        "outputs": reg.pipeline.get("sinks", []), "trace_id": telemetry.trace_id()}))

    @app.post("/pipelines/{pipeline_id}/heartbeat", tags=["pipelines"], response_model=HeartbeatReply)
    def heartbeat(pipeline_id: str, hb: Heartbeat, _: Principal = Security(reporter, scopes=["apply"])) -> HeartbeatReply:
        """A run's cumulative stats and latest log records; the reply says whether it should stop."""
        doc = hub.heartbeat(pipeline_id, hb)
        return HeartbeatReply(id=pipeline_id, state=doc["state"] if doc else None,
                              stop=bool(doc and doc.get("stop_requested")))

    @app.post("/pipelines/{pipeline_id}/stop", tags=["pipelines"], status_code=202)
    def stop(pipeline_id: str, body: StopRequest | None = None,
             who: Principal = Security(authorize, scopes=["apply"])) -> dict[str, Any]:
        """Stop a run (in-process, Ray job, or a CLI/job run that reports here): no chunk starts after it
        sees the request, chunks in flight commit, it ends `stopped`; committed ranges stay, `--resume`
        continues. 409 when the run has already finished."""
        req = body or StopRequest()
        doc = store.get_pipeline(pipeline_id)
        if doc is None:
            raise HTTPException(404, detail={"error": "UnknownPipeline", "message": f"no pipeline {pipeline_id!r}",
                                             "hint": "list pipelines with GET /pipelines"})
        if doc["state"] in TERMINAL:
            store.audit(who.name, "pipeline.stop", pipeline_id, "refused", {"state": doc["state"]})
            raise HTTPException(409, detail={"error": "PipelineFinished",
                                             "message": f"pipeline {pipeline_id} already {doc['state']}",
                                             "hint": "nothing to stop; apply a plan (or run with --resume) to continue"})
        doc = hub.request_stop(pipeline_id, who.name) or doc
        done = executor.stop(pipeline_id, doc, req.force) if doc.get("executor") == executor.kind else {"stopping": True}
        store.audit(who.name, "pipeline.stop", pipeline_id, "ok", {"force": req.force, "comment": req.comment, **done})
        return {"id": pipeline_id, "state": doc["state"], "stop_requested": doc.get("stop_requested"), **done}

    @app.post("/pipelines/{pipeline_id}/credentials", tags=["pipelines"])
    def pipeline_credentials(pipeline_id: str, creds: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
                             ) -> dict[str, Any]:
        """The values of the credentials a submitted run names: only for the pipeline's report token,
        once, while it has not finished."""
        doc = report_token_holder(pipeline_id, creds)
        if doc is None:
            raise unauthorized("only the pipeline's own report token may fetch its credentials",
                               hint="this endpoint is called by the Ray job the control plane submitted")
        if doc["state"] in TERMINAL or not store.first_use(f"credentials:{pipeline_id}", "9999-12-31"):
            store.audit(f"pipeline:{pipeline_id}", "pipeline.credentials", pipeline_id, "refused", {"state": doc["state"]})
            raise HTTPException(409, detail={"error": "CredentialsAlreadyFetched",
                                             "message": f"pipeline {pipeline_id} already fetched its credentials or has finished",
                                             "hint": "apply the plan again for a new run"})
        names = credential_names(doc.get("pipeline") or {})
        values = service.credentials.values(names)
        store.audit(f"pipeline:{pipeline_id}", "pipeline.credentials", pipeline_id, "ok", {"names": sorted(names)})
        return {"credentials": values}

    @app.get("/pipelines", tags=["pipelines"], dependencies=[read()])
    def pipelines() -> list[dict[str, Any]]:
        return [{k: d.get(k) for k in ("id", "name", "plan_id", "state", "executor", "created_at", "updated_at")}
                | {"progress": (d.get("stats") or {}).get("progress")} for d in hub.list()]

    @app.get("/pipelines/{pipeline_id}/status", tags=["pipelines"], dependencies=[read()])
    def status(pipeline_id: str) -> dict[str, Any]:
        doc = hub.get(pipeline_id)
        if doc is None:
            raise HTTPException(404, detail={"error": "UnknownPipeline", "message": f"no pipeline {pipeline_id!r}",
                                             "hint": "list pipelines with GET /pipelines"})
        return doc

    @app.get("/pipelines/{pipeline_id}/checkpoints", tags=["pipelines"], dependencies=[read()])
    def checkpoints(pipeline_id: str) -> dict[str, Any]:
        """What the pipeline's sinks hold of it: per sink, committed ranges and ledgers, first and last ledger,
        config hashes, stale ranges and dead letters; and which ledgers of its range are committed in every sink."""
        from cdp_ray.pipeline import intervals
        from cdp_ray.pipeline.checkpoint import Checkpoint, SinkCheckpoint
        from cdp_ray.pipeline.config import PipelineConfig

        doc = status(pipeline_id)
        cfg = service.credentials.resolve(PipelineConfig.model_validate(store.get_pipeline(pipeline_id)["pipeline"]))
        with telemetry.span("pipeline.checkpoints", pipeline_id=pipeline_id):
            from cdp_ray.sinks.base import make_sink

            sinks = [make_sink(c) for c in cfg.sinks]
            try:
                ckpt = Checkpoint.load(cfg, sinks)
                views = [SinkCheckpoint(s.config.describe(), s.committed(cfg.name), s.dead_letters(cfg.name))
                         for s in sinks]
                done = intervals.intersect(ckpt.done(), [(cfg.source.start, cfg.source.end)])
            finally:
                for s in sinks:
                    s.close()
        return redact({"pipeline": cfg.name, "id": doc["id"], "config_hash": ckpt.hash,
                       "range": [cfg.source.start, cfg.source.end], "committed_ledgers": intervals.size(done),
                       "committed": [list(r) for r in done[:100]], "committed_intervals": len(done),
                       "sinks": [v.to_json(ckpt.hash) for v in views]})

    def _last_event_id(value: str | None) -> int:
        return int(value) if value and value.isdigit() else 0

    @app.get("/pipelines/{pipeline_id}/events", tags=["pipelines"], dependencies=[read()])
    def events(pipeline_id: str, last_event_id: str | None = Header(None)) -> EventSourceResponse:
        """Server-sent events: `progress` on every change, `end` (state, summary, success) when the run
        finishes. Event ids let a client resume with `Last-Event-ID`; comments keep idle connections open."""
        status(pipeline_id)
        return EventSourceResponse(hub.events(pipeline_id, _last_event_id(last_event_id)), ping=SSE_PING_SECONDS,
                                   headers={"X-Accel-Buffering": "no"})

    @app.get("/pipelines/{pipeline_id}/logs", tags=["pipelines"], dependencies=[read()])
    def logs(pipeline_id: str, last_event_id: str | None = Header(None)) -> EventSourceResponse:
        """The run's warnings and errors as server-sent `log` events ({seq, ts, level, message}; the id is
        `seq`, so `Last-Event-ID` resumes), then `end` once the run has finished."""
        status(pipeline_id)
        return EventSourceResponse(hub.logs(pipeline_id, _last_event_id(last_event_id)), ping=SSE_PING_SECONDS,
                                   headers={"X-Accel-Buffering": "no"})

    mcp_endpoint = mcp.mount(app, auth)

    return app
