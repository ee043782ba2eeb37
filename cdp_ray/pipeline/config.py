"""Pipeline configuration: YAML files and the one-line form, validated by pydantic models."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from cdp_ray.errors import CdpRayError, ConfigError, UnknownComponentError
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.pipeline.success import SuccessCriteria
from cdp_ray.processors.base import IMPORT_PATH, get_processor
from cdp_ray.processors.filters import TransactionFilter
from cdp_ray.sinks.base import SINKS, SinkConfig, sink_config


PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class ProcessorStep(BaseModel):
    """One processor of a pipeline and its options."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="registered processor name, e.g. `transactions`, or the import path "
                      "`module:function` of a user processor (then `name` becomes its declared name, its table)")
    config: dict[str, Any] = Field(default_factory=dict, description="the processor's options")
    path: str | None = Field(None, description="import path `module:attr` of a user processor (set from a "
                             "`module:attr` name); imported wherever the pipeline is loaded, Ray workers included")

    @model_validator(mode="before")
    @classmethod
    def _import_path(cls, value: Any) -> Any:
        if isinstance(value, dict) and ":" in str(value.get("name", "")) and not value.get("path"):
            return {**value, "name": get_processor(value["name"]).name, "path": value["name"]}
        return value

    @model_validator(mode="after")
    def _load(self) -> "ProcessorStep":
        if self.path:
            declared = get_processor(self.path).name  # imports the module where this config is loaded
            if declared != self.name:
                raise ValueError(f"processor {self.path!r} is declared as {declared!r}, not {self.name!r}")
        return self


class RunOptions(BaseModel):
    """How a pipeline is executed."""

    model_config = ConfigDict(extra="forbid")
    ledgers_per_task: int | Literal["auto"] = Field(
        "auto",
        description="ledgers per chunk, the unit of work, of output files and of commits: a number (chunks "
        "aligned to its multiples), or `auto`: chunks sized from the lake's object sizes, about "
        "`chunk_target_mb` of ledger data each, from tens of thousands of early ledgers to a few hundred "
        "recent ones (smaller where a short range would leave workers idle)",
    )
    chunk_target_mb: float = Field(
        32, gt=0, le=4096, description="with `ledgers_per_task: auto`: compressed lake bytes per chunk"
    )
    decode_batch_mb: float = Field(
        16, gt=0, le=4096,
        description="ledger XDR decoded at a time inside a chunk: bounds a worker's memory whatever the chunk size "
        "(decoded ledgers take about 6x their XDR; 16 MiB is about 16 protocol-26 ledgers)",
    )
    workers: int | None = Field(None, ge=1, description="parallel workers (default: the cluster's CPUs)")
    on_error: Literal["fail", "quarantine"] = Field(
        "fail", description="a corrupt or unverifiable ledger file, or a missing one inside the lake (a gap), stops "
        "the run, or its range is recorded in the dead-letter table"
    )

    @field_validator("ledgers_per_task", mode="before")
    @classmethod
    def _per_task(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("give a positive number of ledgers, or `auto`")


class PipelineConfig(BaseModel):
    """A whole pipeline: source, processors and sinks."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("pipeline", pattern=PIPELINE_NAME, description="pipeline name, used for checkpoints, manifests "
                      "and stats: 1-128 letters, digits, `_`, `.` and `-`, starting with a letter or digit, no `..`")
    source: LakeSource
    where: TransactionFilter | None = Field(
        None,
        description="keep only the transactions matching these criteria (operation_types, accounts, contract_ids, "
        "assets, event_topics; AND across criteria, OR within one) in every table: each processor sees only the "
        "matching transactions, so the ledgers table has rows only for ledgers holding one, counting those alone. "
        "Ledgers whose raw XDR cannot match are read but not decoded. Part of the checkpoint's config hash",
    )
    processors: list[ProcessorStep] = Field(min_length=1)
    sinks: list[SerializeAsAny[SinkConfig]] = Field(default_factory=list)
    options: RunOptions = Field(default_factory=RunOptions)
    success: SuccessCriteria | None = Field(
        None, description="what a finished run must satisfy (min_rows, max_quarantined, reconcile, estimate_within), "
        "judged over the ranges the run committed; not part of the config hash")

    @model_validator(mode="after")
    def _success_tables(self) -> "PipelineConfig":
        if self.success is not None:
            missing = sorted(self.success.tables() - {s.name for s in self.processors})
            if missing:
                raise ValueError(f"success criteria name tables this pipeline does not produce: {', '.join(missing)}")
        return self

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, str) and not (re.fullmatch(PIPELINE_NAME, value) and ".." not in value):
            raise ValueError(f"pipeline name {value[:140]!r} is not allowed: use 1-128 letters, digits, `_`, `.` and `-`, "
                             "starting with a letter or digit, without `..` (the name becomes a directory of manifests)")
        return value

    @field_validator("processors", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("processors")
    @classmethod
    def _known_processors(cls, steps: list[ProcessorStep]) -> list[ProcessorStep]:
        for step in steps:
            get_processor(step.name).parse_config(step.config)
        return steps

    @field_validator("sinks", mode="before")
    @classmethod
    def _sinks(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [sink_config(_sink_doc(v)) for v in value]
        return value


def _sink_doc(v: Any) -> Any:
    """Accept ``{"parquet": "out/"}`` and ``"parquet://out"`` as shorthands."""
    if isinstance(v, str):
        return parse_sink_uri(v)
    if isinstance(v, dict) and "type" not in v and len(v) == 1:
        (kind, arg), = v.items()
        return {"type": kind, "uri": arg} if isinstance(arg, str) else {"type": kind, **arg}
    return v


def parse_sink_uri(uri: str) -> dict[str, Any]:
    """``parquet://out`` (relative), ``parquet:///abs``, ``parquet+s3://b/p``, ``postgresql://...``,
    ``iceberg://warehouse``, ``iceberg+s3://b/p?catalog_uri=...&namespace=...`` (query: sink options)."""
    if uri.startswith(("postgresql://", "postgres://")):
        return {"type": "postgres", "dsn": uri}
    m = re.match(r"^([a-z]+)(?:\+([a-z0-9]+))?://(.*)$", uri)
    if not m:
        raise ConfigError(f"cannot parse sink {uri!r}", hint="write e.g. parquet://out or postgresql://host/db")
    kind, store, rest = m.groups()
    options: dict[str, Any] = {}
    if kind == "iceberg" and "?" in rest:  # iceberg://warehouse?namespace=stellar&catalog_uri=postgresql+psycopg://...
        rest, query = rest.split("?", 1)
        options = dict(parse_qsl(query))
    return {"type": kind, "uri": f"{store}://{rest}" if store else rest, **options}


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Interpolated text and the ``(line, name)`` of every unset variable without default."""
    out, unset = [], []
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.lstrip().startswith("#"):
            out.append(line)
            continue

        def sub(m: re.Match, lineno: int = lineno) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                unset.append((lineno, name))
                return m.group(0)
            return default

        out.append(_ENV.sub(sub, line))
    return "".join(out), unset


def _unset_hint(name: str) -> str:
    return f"export {name}=... or write ${{{name}:-default}} in the pipeline"


# ---- validation with locations ---------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a pipeline, with where it is."""

    loc: Loc
    message: str
    hint: str = ""
    line: int | None = None
    column: int | None = None
    severity: Literal["error", "warning"] = "error"

    @property
    def path(self) -> str:
        """``processors[1].config.contract_ids``."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "pipeline"

    def format(self, where: str) -> str:
        pos = where if not self.line else f"{where}:{self.line}" + (f":{self.column}" if self.column else "")
        text = f"{pos}: {self.severity}: {self.path}: {self.message}"
        return text + (f"\n      {self.hint}" if self.hint else "")

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "path": self.path, "line": self.line, "column": self.column,
                "message": self.message, "hint": self.hint}


class PipelineValidationError(ConfigError):
    """A pipeline document has errors; ``problems`` lists each with its line and column."""

    def __init__(self, where: str, problems: list[Problem]):
        errors = [p for p in problems if p.severity == "error"]
        noun = "problem" if len(errors) == 1 else "problems"
        super().__init__(
            f"{where} has {len(errors)} {noun}:\n  " + "\n  ".join(p.format(where) for p in errors),
            hint="fix the lines above" + (f"; `cdp-ray validate {where}` checks the file again" if Path(where).is_file() else ""),
        )
        self.where, self.problems = where, problems


@dataclass
class Validation:
    """The result of checking a pipeline: the config (when it has no errors) and every problem found."""

    where: str
    config: PipelineConfig | None
    problems: list[Problem] = field(default_factory=list)
    time_resolution_reads: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def config_or_raise(self) -> PipelineConfig:
        if self.errors or self.config is None:
            raise PipelineValidationError(self.where, self.problems)
        return self.config


def _node_at(root: yaml.Node | None, loc: Loc, *, key: bool = False) -> yaml.Node | None:
    """The YAML node holding ``loc`` (the deepest existing one); the key node when ``key``."""
    node = root
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if pair is None:
                return node
            if key and i == len(loc) - 1:
                return pair[0]
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _problem(root: yaml.Node | None, loc: Loc, message: str, hint: str = "", *, key: bool = False,
             severity: Literal["error", "warning"] = "error") -> Problem:
    node = _node_at(root, loc, key=key)
    line = col = None
    if node is not None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
    return Problem(loc, message, hint, line, col, severity)


_PYDANTIC_HINTS = {
    "extra_forbidden": "remove this key, or check its spelling against `cdp-ray schema`",
    "missing": "add this required field",
}


def _model_at(parent: Loc, model: type[BaseModel] | None) -> type[BaseModel] | None:
    """The pydantic model of the mapping at ``parent`` (relative to ``model``)."""
    for part in parent:
        if model is None or isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        ann = f.annotation if f else None
        model = next((t for t in (ann, *getattr(ann, "__args__", ())) if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return model


def _unknown_field_hint(name: str, model: type[BaseModel] | None) -> str:
    import difflib

    if model is None:
        return _PYDANTIC_HINTS["extra_forbidden"]
    known = [f.alias or n for n, f in model.model_fields.items()]
    if model is LakeSource:
        known += list(TIME_FIELDS)
    near = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    return (f"did you mean {' or '.join(repr(n) for n in near)}? " if near else "") + f"fields here: {', '.join(known)}"


def _pydantic_problems(root: yaml.Node | None, exc: ValidationError, prefix: Loc = (),
                       model: type[BaseModel] | None = PipelineConfig) -> list[Problem]:
    """One problem per pydantic error; ``model`` is the model validated at ``prefix`` (for suggestions)."""
    out = []
    for e in exc.errors():
        rel = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = prefix + rel
        msg = e["msg"].removeprefix("Value error, ")
        hint = _PYDANTIC_HINTS.get(e["type"], "")
        if e["type"] == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}"
            hint = _unknown_field_hint(str(loc[-1]), _model_at(rel[:-1], model))
        out.append(_problem(root, loc, msg, hint, key=e["type"] == "extra_forbidden"))
    return out


def _check_processors(root: yaml.Node | None, steps: Any) -> tuple[list[Problem], list[Any]]:
    problems, good = [], []
    if not isinstance(steps, list):
        return problems, steps
    for i, step in enumerate(steps):
        if isinstance(step, str):
            name, conf, name_loc = step, {}, ("processors", i)
        elif isinstance(step, dict) and isinstance(step.get("name"), str):
            name, conf, name_loc = step["name"], step.get("config") or {}, ("processors", i, "name")
        else:
            good.append(step)  # shape errors are reported by the model
            continue
        try:
            proc = get_processor(name)
        except ConfigError as exc:  # unknown, or an import path that does not import
            problems.append(_problem(root, name_loc, exc.message, exc.hint))
            continue
        try:
            proc.config_model.model_validate(conf)
        except ValidationError as exc:
            problems += _pydantic_problems(root, exc, ("processors", i, "config"), proc.config_model)
            continue
        good.append(step)
    return problems, good


def _check_sinks(root: yaml.Node | None, sinks: Any) -> tuple[list[Problem], list[Any]]:
    problems, good = [], []
    if not isinstance(sinks, list):
        return problems, sinks
    for i, item in enumerate(sinks):
        try:
            sink_doc = _sink_doc(item)
            sink_config(sink_doc)
        except ValidationError as exc:
            model = SINKS.get(sink_doc.get("type"), (None,))[0] if isinstance(sink_doc, dict) else None
            problems += _pydantic_problems(root, exc, ("sinks", i), model)
            continue
        except UnknownComponentError as exc:
            problems.append(_problem(root, ("sinks", i, "type"), exc.message, exc.hint))
            continue
        except ConfigError as exc:
            problems.append(_problem(root, ("sinks", i), exc.message, exc.hint))
            continue
        except (AttributeError, TypeError):
            problems.append(_problem(root, ("sinks", i), "a sink is a URI string or a mapping",
                                     "write e.g. `- parquet: out/` or `- {type: postgres, dsn: postgresql://...}`"))
            continue
        good.append(item)
    return problems, good


_NETWORK_ALIASES = {"mainnet": "pubnet", "public": "pubnet", "main": "pubnet", "test": "testnet", "future": "futurenet"}


def flow_problems(cfg: PipelineConfig, root: yaml.Node | None = None, *, warn_no_sinks: bool = True) -> list[Problem]:
    """Checks across components: tables flowing from processors into sinks, source vs. sinks, network."""
    from cdp_ray.networks import PASSPHRASES

    out: list[Problem] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(cfg.processors):
        if step.name in seen:
            out.append(_problem(root, ("processors", i), f"processor {step.name!r} is listed twice (also at processors[{seen[step.name]}])",
                                "each processor writes one table named after it; list it once"))
        seen.setdefault(step.name, i)
    net = cfg.source.network
    if net.lower() not in PASSPHRASES and " " not in net:
        alias = _NETWORK_ALIASES.get(net.lower())
        near = f"did you mean {alias!r}? " if alias else ""
        out.append(_problem(root, ("source", "network"), f"unknown network {net!r}",
                            f"{near}use pubnet, testnet, futurenet, or the literal network passphrase"))
    procs = [get_processor(s.name) for s in cfg.processors]
    src_root = cfg.source.uri.rstrip("/")
    for i, s in enumerate(cfg.sinks):
        uri = getattr(s, "uri", None)
        if isinstance(uri, str) and src_root and (uri.rstrip("/") == src_root or uri.startswith(src_root + "/")):
            out.append(_problem(root, ("sinks", i), f"sink writes inside the source lake {cfg.source.uri!r}",
                                "write the output somewhere else, e.g. parquet://out/"))
        if s.type == "parquet" and getattr(s, "partitioning", None) == "date":
            for p in procs:
                f = p.schema.field(s.date_column) if s.date_column in p.schema.names else None
                if f is None or not pa.types.is_timestamp(f.type):
                    out.append(_problem(root, ("sinks", i), f"table {p.name!r} has no timestamp column {s.date_column!r} to partition by date",
                                        "set date_column to a timestamp column every table has, or use partitioning: range"))
        if s.type == "postgres":
            from cdp_ray.sinks.ddl import pg_type

            for p in procs:
                for f in p.schema:
                    try:
                        pg_type(f.type)
                    except CdpRayError as exc:
                        out.append(_problem(root, ("sinks", i), f"table {p.name!r} column {f.name!r}: {exc.message}", exc.hint))
    if not cfg.sinks and warn_no_sinks:
        out.append(_problem(root, ("processors",), "the pipeline has no sinks: its tables are computed and dropped",
                            "add e.g. `sinks: [parquet: out/]`", key=True, severity="warning"))
    return out


def validate_document(doc: Any, where: str = "pipeline", root: yaml.Node | None = None) -> Validation:
    """Check a pipeline document; every problem carries its YAML line when ``root`` is the composed node."""
    if not isinstance(doc, dict):
        return Validation(where, None, [_problem(root, (), "a pipeline is a mapping with source, processors and sinks",
                                                 "start from `cdp-ray init` for a working example")])
    p_problems, good_steps = _check_processors(root, doc.get("processors"))
    s_problems, good_sinks = _check_sinks(root, doc.get("sinks"))
    problems = p_problems + s_problems
    trial = dict(doc)
    if p_problems:
        trial["processors"] = good_steps or ["ledgers"]
    if s_problems:
        trial["sinks"] = good_sinks
    cfg = None
    try:
        cfg = PipelineConfig.model_validate(trial)
    except ValidationError as exc:
        problems += [p for p in _pydantic_problems(root, exc)
                     if not (p_problems and p.loc[:1] == ("processors",)) and not (s_problems and p.loc[:1] == ("sinks",))]
    except CdpRayError as exc:
        problems.append(_problem(root, (), exc.message, exc.hint))
    if cfg is not None:
        problems += flow_problems(cfg, root, warn_no_sinks=not s_problems)
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    ok = not any(p.severity == "error" for p in problems)
    return Validation(where, cfg if ok else None, problems)


# ---- UTC time ranges ---------------------------------------------------------------------------

TIME_FIELDS = ("start_time", "end_time")


def _lake_for(source: dict[str, Any]):
    """The lake a source document points at, without settling its layout on a ledger."""
    from cdp_ray.lake import LedgerLake

    try:
        src = LakeSource.model_validate({**source, "start": source.get("start") or 2, "end": source.get("end") or source.get("start") or 2})
    except ValidationError as exc:
        e = exc.errors()[0]
        raise ConfigError(f"source.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}",
                          hint="fix the source before its times can be resolved") from None
    return LedgerLake(src.uri, schema=src.lake_schema(), layout=src.layout, file_format=src.file_format,
                      storage_options=src.fsspec_options(), retries=src.retries)


def resolve_source_times(source: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Replace ``start_time``/``end_time`` of a source document by ``start``/``end`` ledgers.

    See :mod:`cdp_ray.pipeline.timerange` for the method. Returns the new document and the object
    reads the search took.
    """
    from cdp_ray.pipeline.timerange import resolve_time_range

    times = {k: source[k] for k in TIME_FIELDS if source.get(k) is not None}
    if not times:
        return source, 0
    for bound, tkey in (("start", "start_time"), ("end", "end_time")):
        if tkey in times and source.get(bound) is not None:
            raise ConfigError(f"source has both {bound} and {tkey}", hint=f"give the range's {bound} as a ledger ({bound}) or as a UTC time ({tkey}), not both")
    rest = {k: v for k, v in source.items() if k not in TIME_FIELDS}
    found = resolve_time_range(_lake_for(rest), times.get("start_time"), times.get("end_time"))
    if "start_time" in times:
        rest["start"] = found.start
    if "end_time" in times:
        rest["end"] = found.end
    missing = [b for b in ("start", "end") if rest.get(b) is None]
    if missing:
        raise ConfigError(f"source has no {missing[0]}", hint=f"add {missing[0]} (a ledger) or {missing[0]}_time (a UTC time)")
    return rest, found.reads


def _resolve_doc_times(doc: Any, root: yaml.Node | None, where: str) -> tuple[Any, list[Problem], int]:
    src = doc.get("source") if isinstance(doc, dict) else None
    if not isinstance(src, dict) or not any(k in src for k in TIME_FIELDS):
        return doc, [], 0
    try:
        new_src, reads = resolve_source_times(src)
    except CdpRayError as exc:
        key = next(k for k in TIME_FIELDS if k in src)
        return doc, [_problem(root, ("source", key), exc.message, exc.hint)], 0
    return {**doc, "source": new_src}, [], reads


def _without_times(src: dict[str, Any]) -> dict[str, Any]:
    """A source document with its times replaced by placeholder ledgers, to check everything else offline."""
    out = {k: v for k, v in src.items() if k not in TIME_FIELDS}
    if "start_time" in src and "start" not in out:
        out["start"] = 2
    if "end_time" in src and "end" not in out:
        out["end"] = out["start"] if isinstance(out.get("start"), int) else 2
    return out


# ---- entry points -------------------------------------------------------------------------------


def validate_text(text: str, where: str = "pipeline", *, resolve_times: bool = True) -> Validation:
    """Check pipeline YAML text: interpolation, YAML syntax, models, processor/sink flow, time range."""
    text, unset = _interpolate(text)
    if unset:
        return Validation(where, None, [Problem((), f"environment variable {name} is not set", _unset_hint(name), line)
                                        for line, name in unset])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        return Validation(where, None, [Problem((), f"not valid YAML: {reason}", "check indentation and quoting on this line",
                                                mark.line + 1 if mark else None, mark.column + 1 if mark else None)])
    reads = 0
    if resolve_times:
        doc, problems, reads = _resolve_doc_times(doc, root, where)
        if problems:
            return Validation(where, None, problems)
    elif isinstance(doc, dict) and isinstance(doc.get("source"), dict):
        doc = {**doc, "source": _without_times(doc["source"])}
    v = validate_document(doc, where, root)
    v.time_resolution_reads = reads
    return v


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read a pipeline YAML file, with ``${ENV}`` interpolation and UTC times resolved to ledgers."""
    return validate_file(path).config_or_raise()


def validate_file(path: str | Path, *, resolve_times: bool = True) -> Validation:
    """:func:`validate_text` over a file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        hint = "check the path; `cdp-ray init` writes a pipeline to start from"
        raise ConfigError(f"cannot read pipeline file {str(p)!r}: {exc.strerror}", hint=hint) from exc
    return validate_text(text, str(path), resolve_times=resolve_times)


ONE_LINER = "one-line pipeline"


def validate_spec(spec: str, *, resolve_times: bool = True) -> Validation:
    """A pipeline YAML path or one-liner, checked (see :func:`parse_pipeline`)."""
    if "|" not in spec:
        return validate_file(spec, resolve_times=resolve_times)
    parts = [p.strip() for p in spec.split("|") if p.strip()]
    try:
        source = _source_from_uri(parts[0], resolve_times)
    except ValidationError as exc:
        return Validation(ONE_LINER, None, _pydantic_problems(None, exc, ("source",), LakeSource))
    processors, sinks = [], []
    for part in parts[1:]:
        (sinks if "://" in part else processors).append(part)
    doc = {"name": "oneliner", "source": source.model_dump(), "processors": processors, "sinks": sinks}
    return validate_document(doc, ONE_LINER)


def _source_from_uri(uri: str, resolve_times: bool = True) -> LakeSource:
    parsed = urlparse(uri)
    params = dict(parse_qsl(parsed.query))
    times = {k: params.pop(k) for k in TIME_FIELDS if k in params}
    if not times:
        return LakeSource.from_uri(uri)
    bare = urlunparse(parsed._replace(query=urlencode(params)))
    probe = LakeSource.from_uri(bare, **{b: params.get(b, 2) for b in ("start", "end")})
    doc = {**probe.model_dump(), **times}
    for b in ("start", "end"):
        if b not in params:
            doc.pop(b)
    if not resolve_times:
        return probe
    resolved, _ = resolve_source_times(doc)
    return LakeSource.model_validate(resolved)


def parse_pipeline(spec: str) -> PipelineConfig:
    """A pipeline YAML path, or the one-line form ``SOURCE | processor ... | SINK``.

    ``lake:///data/lake?start=2&end=9&network=testnet | ledgers | transactions | parquet://out``;
    the range may be given as UTC times: ``?start_time=2025-06-01T00:00:00Z&end_time=2025-06-01T01:00:00Z``.
    """
    return validate_spec(spec).config_or_raise()


def pipeline_json_schema() -> dict[str, Any]:
    """JSON Schema of a pipeline YAML document, as written by users (shorthands and time ranges included)."""
    from cdp_ray.processors.base import REGISTRY

    get_processor("ledgers")  # registers the built-in processors
    schema = PipelineConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    src = defs["LakeSource"]
    src["properties"]["start"]["description"] += "; or give start_time"
    src["properties"]["end"]["description"] += "; or give end_time"
    src["properties"]["start_time"] = {
        "type": "string", "format": "date-time",
        "description": "UTC time (ISO 8601): the range starts at the first ledger closed at or after it",
    }
    src["properties"]["end_time"] = {
        "type": "string", "format": "date-time",
        "description": "UTC time (ISO 8601): the range ends at the last ledger closed at or before it",
    }
    src["required"] = ["uri"]
    src["allOf"] = [{"anyOf": [{"required": ["start"]}, {"required": ["start_time"]}]},
                    {"anyOf": [{"required": ["end"]}, {"required": ["end_time"]}]}]
    names = sorted(REGISTRY)
    user = {"type": "string", "pattern": f"^{IMPORT_PATH.pattern}$", "description": "import path of a user processor"}
    step_name = defs["ProcessorStep"]["properties"]["name"]
    step_name["anyOf"] = [{"type": "string", "enum": names}, user]
    step_name.pop("type", None)
    schema["properties"]["processors"]["items"] = {
        "anyOf": [{"type": "string", "enum": names, "description": "processor name, default options"}, user,
                  {"$ref": "#/$defs/ProcessorStep"}]}
    sink_refs = []
    for kind, (model, _cls) in sorted(SINKS.items()):
        sub = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[model.__name__] = sub
        sink_refs.append({"$ref": f"#/$defs/{model.__name__}"})
        sink_refs.append({"type": "object", "minProperties": 1, "maxProperties": 1, "required": [kind],
                          "description": f"shorthand: `{kind}: URI` or `{kind}: {{options}}`"})
    sink_refs.append({"type": "string", "description": "sink URI: parquet://out, parquet+s3://bucket/prefix, postgresql://host/db, iceberg://warehouse"})
    schema["properties"]["sinks"]["items"] = {"anyOf": sink_refs}
    defs.pop("SinkConfig", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://cdp-ray.dev/schemas/pipeline.json", **schema}


def with_range(
    cfg: PipelineConfig,
    *,
    start: int | None = None,
    end: int | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
) -> PipelineConfig:
    """``cfg`` with its source range replaced (ledgers or UTC times); unspecified bounds are kept."""
    if start is None and end is None and start_time is None and end_time is None:
        return cfg
    src = cfg.source.model_dump()
    times = {k: v for k, v in (("start_time", start_time), ("end_time", end_time)) if v is not None}
    for bound, value in (("start", start), ("end", end)):
        if value is not None:
            src[bound] = value
        elif f"{bound}_time" in times:
            src.pop(bound)
    src, _ = resolve_source_times({**src, **times})
    try:
        new_src = LakeSource.model_validate(src)
    except ValidationError as exc:
        raise ConfigError(f"invalid range: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                          hint="check --start/--end (or --start-time/--end-time)") from None
    return cfg.model_copy(update={"source": new_src})
