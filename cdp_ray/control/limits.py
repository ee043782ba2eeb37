"""Bounds on what a client can make the control plane hold: request bodies, documents, YAML expansion."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdp_ray.control.errors import DocumentTooLarge, UnsafeDocument
from cdp_ray.errors import ConfigError

MAX_YAML_ALIASES = 64
MAX_YAML_NODES = 100_000


def _too_large(limit: int) -> dict[str, str]:
    return {"error": "RequestTooLarge", "message": f"the request body is over the limit of {limit} bytes",
            "hint": "send a smaller document (the limit is the control plane's `max_body_bytes`)"}


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is answered 413, by its Content-Length before it is read,
    or as it arrives when it has none (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            body = json.dumps({"detail": _too_large(self.max_bytes)}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, detail=_too_large(self.max_bytes))
            return message

        await self.app(scope, bounded, send)


def check_size(doc: Any, limit: int, what: str) -> None:
    """Refuse a document (text, or JSON-able) over ``limit`` bytes."""
    size = len(doc.encode()) if isinstance(doc, str) else len(json.dumps(doc, default=str))
    if size > limit:
        raise DocumentTooLarge(f"{what} is {size} bytes, over the limit of {limit} bytes")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases while composing."""

    aliases = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise UnsafeDocument(f"the YAML uses more than {MAX_YAML_ALIASES} aliases",
                                     hint="write the document without anchors and aliases")
        return super().compose_node(parent, index)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of the document once every alias is expanded (a shared node counts each time it is used)."""
    sizes: dict[int, int] = {}  # -1 while the node's subtree is being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        if counted:
            sizes[id(node)] = min(1 + sum(sizes[id(k)] for k in _children(node)), MAX_YAML_NODES + 1)
        elif sizes.get(id(node)) == -1:
            raise UnsafeDocument("the YAML holds a recursive alias", hint="write the document without anchors and aliases")
        elif id(node) not in sizes:
            sizes[id(node)] = -1
            stack.append((node, True))
            stack += [(k, False) for k in _children(node)]
    return sizes[id(root)]


def load_yaml(text: str, what: str) -> Any:
    """YAML text from a client: safe tags only, at most a few aliases, and a bounded expanded size."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node) > MAX_YAML_NODES:
            raise UnsafeDocument(f"{what}: the YAML expands to more than {MAX_YAML_NODES} nodes through its aliases",
                                 hint="write the document without anchors and aliases")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML: {exc}") from exc
    except RecursionError:
        raise UnsafeDocument(f"{what}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
