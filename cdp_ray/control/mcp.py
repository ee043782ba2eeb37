"""The control plane over the Model Context Protocol, with the official ``mcp`` SDK.

Two transports, one bridge: ``cdp-ray mcp`` serves MCP on stdio and calls a control plane over HTTP
with its token; the control plane itself serves streamable HTTP at ``/mcp`` and calls its own API
in-process with the caller's bearer token. Either way every tool call is an HTTP request to the API,
so scopes, limits, policies and the audit trail are exactly those of the API.

The tools are generated, not written: each is an API operation named in :data:`TOOLS`, its input
schema the operation's own parameters and request model (from the OpenAPI document), its description
the route's docstring and scope, and ``tool_id`` arguments are enums of the tool cards' ids.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from typing import Any, AsyncIterator, Callable

import httpx
import mcp_types as types
from mcp.server.lowlevel import Server

import cdp_ray

#: MCP tool name -> (HTTP method, API path, hints for agents)
TOOLS: dict[str, tuple[str, str, dict[str, bool]]] = {
    "list_components": ("GET", "/tools", {"readOnlyHint": True}),
    "describe_component": ("GET", "/tools/{tool_id}", {"readOnlyHint": True}),
    "estimate": ("POST", "/estimate", {"readOnlyHint": True}),
    "preview": ("POST", "/tools/{tool_id}/preview", {"readOnlyHint": True}),
    "plan": ("POST", "/plans", {"readOnlyHint": False, "destructiveHint": False}),
    "approve": ("POST", "/plans/{plan_id}/approve", {"readOnlyHint": False, "destructiveHint": False}),
    "apply": ("POST", "/plans/{plan_id}/apply", {"readOnlyHint": False, "destructiveHint": True}),
    "status": ("GET", "/pipelines/{pipeline_id}/status", {"readOnlyHint": True}),
    "stop": ("POST", "/pipelines/{pipeline_id}/stop", {"readOnlyHint": False, "destructiveHint": False}),
    "checkpoint_list": ("GET", "/pipelines/{pipeline_id}/checkpoints", {"readOnlyHint": True}),
}
INSTRUCTIONS = ("Batch analytics over Stellar ledgers on Ray. Discover components with list_components and "
                "describe_component, try a processor with preview, then plan -> approve (when the plan's status is "
                "pending_approval) -> apply, and follow the run with status; stop halts it (committed ranges stay). "
                "Secrets never go in a pipeline: write ${credential:NAME}.")


def _inline(schema: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """``schema`` with ``#/components/schemas/...`` references replaced by the schemas they name."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/") and depth < 16:
            target = components.get(ref.rsplit("/", 1)[-1], {})
            return _inline({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, components, depth + 1)
        return {k: _inline(v, components, depth) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, components, depth) for v in schema]
    return schema


class Operation:
    """One API operation as an MCP tool: its schema from OpenAPI, its call as an HTTP request."""

    def __init__(self, name: str, method: str, path: str, hints: dict[str, bool], api: dict[str, Any],
                 card_ids: list[str]):
        op = api["paths"][path][method.lower()]
        components = api.get("components", {}).get("schemas", {})
        self.name, self.method, self.path = name, method, path
        props: dict[str, Any] = {}
        required: list[str] = []
        self.path_params: list[str] = []
        self.query_params: list[str] = []
        for p in op.get("parameters", []):
            if p["in"] not in ("path", "query"):
                continue
            schema = _inline(p.get("schema", {}), components)
            if p["name"] == "tool_id" and card_ids:
                ids = [c for c in card_ids if "preview" not in path or c.startswith("processor.")]
                schema = {"type": "string", "enum": ids}
            props[p["name"]] = {**schema, **({"description": p["description"]} if p.get("description") else {})}
            (self.path_params if p["in"] == "path" else self.query_params).append(p["name"])
            if p.get("required"):
                required.append(p["name"])
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        self.body_fields: list[str] = []
        if body is not None:
            body = _inline(body, components)
            if "anyOf" in body:  # an optional body: `Model | None`
                body = next((b for b in body["anyOf"] if b.get("type") == "object"), {})
            for field, schema in body.get("properties", {}).items():
                props[field] = schema
                self.body_fields.append(field)
            if op["requestBody"].get("required"):
                required += [f for f in body.get("required", []) if f not in required]
        scopes = [s for sec in op.get("security", []) for s in sec.get("bearer", [])]
        doc = (op.get("description") or op.get("summary") or "").strip()
        self.tool = types.Tool(
            name=name,
            description=f"{doc}\n\n{method} {path}" + (f"; needs the {', '.join(scopes)} scope" if scopes else ""),
            input_schema={"type": "object", "properties": props, "required": required},
            annotations=types.ToolAnnotations(**hints),
        )

    async def call(self, http: httpx.AsyncClient, args: dict[str, Any]) -> types.CallToolResult:
        path = self.path
        for p in self.path_params:
            path = path.replace("{" + p + "}", urllib.parse.quote(str(args.get(p, "")), safe=""))
        query = {p: args[p] for p in self.query_params if args.get(p) is not None}
        body = {f: args[f] for f in self.body_fields if f in args}
        r = await http.request(self.method, path, params=query,
                               json=body if self.body_fields or self.method == "POST" else None)
        try:
            doc = r.json()
        except ValueError:
            doc = {"status": r.status_code, "text": r.text[:2000]}
        text = json.dumps(doc, default=str)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=r.status_code >= 400)


async def tools_of(http: httpx.AsyncClient) -> dict[str, Operation]:
    """The tools, from the control plane's OpenAPI document and its tool cards (read with ``http``'s token)."""
    api = (await http.get("/openapi.json")).json()
    cards = await http.get("/tools")
    ids = [c["id"] for c in cards.json()] if cards.status_code == 200 else []
    return {name: Operation(name, method, path, hints, api, ids) for name, (method, path, hints) in TOOLS.items()}


def build_server(client_for: Callable[[Any], httpx.AsyncClient]) -> Server:
    """An MCP server whose tools call the API through ``client_for(request context)``."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        async with client_for(ctx) as http:
            return types.ListToolsResult(tools=[op.tool for op in (await tools_of(http)).values()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        async with client_for(ctx) as http:
            ops = await tools_of(http)
            if params.name not in ops:
                return types.CallToolResult(content=[types.TextContent(
                    type="text", text=f"no tool {params.name!r}; tools: {', '.join(ops)}")], is_error=True)
            return await ops[params.name].call(http, dict(params.arguments or {}))

    return Server("cdp-ray", version=cdp_ray.__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


class McpEndpoint:
    """``/mcp`` on the control plane: bearer-token checked, stateless streamable HTTP, calling the app in-process."""

    def __init__(self, auth: Any):
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self.auth = auth
        self.app: Any = None
        self.server = build_server(self._client)
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True, json_response=True)

    def _client(self, ctx: Any) -> httpx.AsyncClient:
        headers = {}
        request = getattr(ctx, "request", None)
        if request is not None and request.headers.get("authorization"):
            headers["Authorization"] = request.headers["authorization"]
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://cdp-ray.internal",
                                 headers=headers, timeout=120)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from cdp_ray.control.auth import unauthorized

            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if self.auth.principal(token.strip() or None if scheme.lower() == "bearer" else None) is None:
                from fastapi.responses import JSONResponse

                exc = unauthorized("missing or unknown bearer token", hint="send the token you use for the HTTP API")
                await JSONResponse({"detail": exc.detail}, status_code=401, headers=exc.headers)(scope, receive, send)
                return
        await self.manager.handle_request(scope, receive, send)


def mount(app: Any, auth: Any) -> McpEndpoint:
    """Serve MCP at ``/mcp`` of the FastAPI ``app``; run ``endpoint.running()`` in the app's lifespan."""
    from starlette.routing import Route

    endpoint = McpEndpoint(auth)
    endpoint.app = app
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False))
    return endpoint


async def serve_stdio(url: str, token: str | None) -> None:
    """``cdp-ray mcp``: MCP on stdin/stdout, each tool call an HTTP request to the control plane at ``url``."""
    from mcp.server.stdio import stdio_server

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    server = build_server(lambda _ctx: httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=120))
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
