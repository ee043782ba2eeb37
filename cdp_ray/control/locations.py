"""Where a pipeline reads and writes, as the control plane checks it.

Over the API, a relative local path resolves against the control plane's ``data_dir`` and may not
leave it (``..``, ``~``); sinks write to local paths, ``s3://``, ``gs://`` or PostgreSQL only. A
:class:`Location` is what ``allowed_roots`` policies compare with their roots: a local path with its
symlinks resolved, an object-store bucket and prefix (and the endpoint serving it), or a PostgreSQL
host, port, database and schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import unquote, urlparse

from cdp_ray.control.errors import UnsafeDocument
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.source import LakeSource

Kind = Literal["local", "s3", "gs", "postgres", "other"]
_SCHEMES: dict[str, Kind] = {"": "local", "file": "local", "lake": "local", "s3": "s3", "s3a": "s3", "gs": "gs",
                             "gcs": "gs"}


@dataclass(frozen=True)
class Location:
    """One place a pipeline reads or writes; ``path`` is ``None`` when it cannot be compared (``..`` in a key)."""

    kind: Kind
    path: str | None
    endpoint: str | None = None
    shown: str = ""

    def __str__(self) -> str:
        return self.shown + (f" at {self.endpoint}" if self.endpoint else "")

    def within(self, root: "Location") -> bool:
        if self.kind != root.kind or self.path is None or root.path is None or self.endpoint != root.endpoint:
            return False
        if self.kind == "local":
            return self.path == root.path or self.path.startswith(root.path.rstrip("/") + "/")
        mine, theirs = self.path.split("/"), root.path.split("/")
        if self.kind == "postgres":  # host:port / db / schema; a root without a schema allows every schema
            return mine[: len(theirs)] == theirs
        return mine[: len(theirs)] == theirs or not root.path


def _scheme(uri: str) -> str:
    return urlparse(uri).scheme if "://" in uri else ""


def confine_local(uri: str, data_dir: Path, what: str) -> str:
    """``uri`` as an absolute path when it is a relative local path, refused when it leaves ``data_dir``."""
    scheme = _scheme(uri)
    if _SCHEMES.get(scheme) != "local":
        return uri
    path = uri.split("://", 1)[1] if scheme else uri
    if scheme == "file" and path.startswith("/"):
        return path
    if path.startswith("~"):
        raise UnsafeDocument(f"{what}: {uri!r} starts with `~`, which is not expanded over the API",
                             hint="give an absolute path, or a path relative to the control plane's data directory")
    if os.path.isabs(path):
        return path
    base = os.path.normpath(os.path.abspath(data_dir))
    full = os.path.normpath(os.path.join(base, path))
    if full != base and not full.startswith(base.rstrip("/") + "/"):
        raise UnsafeDocument(f"{what}: {uri!r} leaves the data directory {base}",
                             hint="relative paths resolve inside the control plane's data directory; remove `..`")
    return full


def confine(cfg: PipelineConfig, data_dir: Path) -> PipelineConfig:
    """``cfg`` with relative local paths made absolute under ``data_dir``; escapes and unknown sink
    schemes refused."""
    source = cfg.source.model_copy(update={"uri": confine_local(cfg.source.uri, data_dir, "source.uri")})
    sinks = []
    for i, s in enumerate(cfg.sinks):
        uri = getattr(s, "uri", None)
        if isinstance(uri, str):
            if _scheme(uri) not in _SCHEMES:
                raise UnsafeDocument(f"sinks[{i}].uri: {uri!r} is not a local path, s3:// or gs:// location",
                                     hint="write Parquet to a local path, s3://bucket/prefix or gs://bucket/prefix")
            s = s.model_copy(update={"uri": confine_local(uri, data_dir, f"sinks[{i}].uri")})
        sinks.append(s)
    return cfg.model_copy(update={"source": source, "sinks": sinks})


def _object_location(uri: str, options: dict[str, Any]) -> Location:
    kind = _SCHEMES[_scheme(uri)]
    parsed = urlparse(uri)
    parts = [p for p in (parsed.netloc + parsed.path).split("/") if p]
    if kind == "local":
        path = os.path.realpath(uri.split("://", 1)[1] if "://" in uri else uri)
        return Location("local", path, shown=path)
    endpoint = (options.get("client_kwargs") or {}).get("endpoint_url") or options.get("endpoint_url")
    shown = f"{kind}://{'/'.join(parts)}"
    return Location(kind, None if {".", ".."} & set(parts) else "/".join(parts),
                    str(endpoint).rstrip("/") if endpoint else None, shown)


def source_location(src: LakeSource) -> Location:
    return _object_location(src.uri, src.fsspec_options())


def sink_location(sink: Any, resolve_text: Callable[[str], str] = lambda s: s) -> Location | None:
    """Where a sink writes (``None`` for a sink that writes nowhere); ``resolve_text`` substitutes
    credentials into a DSN to find its host."""
    if sink.type == "postgres":
        target = sink.model_copy(update={"dsn": resolve_text(sink.dsn) if sink.dsn else None}).target()
        hostport, _, db = target.partition("/")
        path = f"{hostport.lower()}/{db}/{sink.db_schema}"
        return Location("postgres", path, shown=f"postgresql://{path}")
    uri = getattr(sink, "uri", None)
    if not isinstance(uri, str):
        return None
    if _scheme(uri) not in _SCHEMES:
        return Location("other", None, shown=uri)  # within no root
    options = sink.fsspec_options() if hasattr(sink, "fsspec_options") else {}
    return _object_location(uri, options)


def root_location(entry: str | dict[str, Any], data_dir: Path) -> Location:
    """A root of an ``allowed_roots`` policy: a local directory (relative: under ``data_dir``),
    ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``postgresql://host[:port]/db[/schema]``, or
    ``{uri: ..., endpoint_url: ...}`` for an S3- or GCS-compatible service."""
    uri, endpoint = (entry, None) if isinstance(entry, str) else (entry["uri"], entry.get("endpoint_url"))
    if uri.startswith(("postgresql://", "postgres://")):
        p = urlparse(uri)
        host = unquote(p.hostname or "localhost")
        parts = [unquote(x) for x in p.path.split("/") if x]
        path = "/".join([f"{host}:{p.port or 5432}", *parts])
        return Location("postgres", path, shown=f"postgresql://{path}")
    if _SCHEMES.get(_scheme(uri)) == "local":
        local = uri.split("://", 1)[1] if "://" in uri else uri
        path = os.path.realpath(local if os.path.isabs(local) else os.path.join(data_dir, local))
        return Location("local", path, shown=path)
    return _object_location(uri, {"endpoint_url": endpoint} if endpoint else {})
