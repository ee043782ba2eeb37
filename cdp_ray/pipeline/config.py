"""Pipeline configuration: YAML files and the one-line form, validated by pydantic models."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.processors.base import get_processor
from cdp_ray.sinks.base import SinkConfig, sink_config


class ProcessorStep(BaseModel):
    """One processor of a pipeline and its options."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="registered processor name, e.g. `transactions`")
    config: dict[str, Any] = Field(default_factory=dict, description="the processor's options")


class RunOptions(BaseModel):
    """How a pipeline is executed."""

    model_config = ConfigDict(extra="forbid")
    ledgers_per_task: int = Field(
        64, ge=1, description="ledgers per unit of work: the range of one output file and one commit"
    )
    workers: int | None = Field(None, ge=1, description="parallel workers (default: the cluster's CPUs)")
    on_error: Literal["fail", "quarantine"] = Field(
        "fail", description="a corrupt ledger stops the run, or is recorded in the dead-letter table"
    )


class PipelineConfig(BaseModel):
    """A whole pipeline: source, processors and sinks."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("pipeline", description="pipeline name, used for checkpoints and stats")
    source: LakeSource
    processors: list[ProcessorStep] = Field(min_length=1)
    sinks: list[SerializeAsAny[SinkConfig]] = Field(default_factory=list)
    options: RunOptions = Field(default_factory=RunOptions)

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
    """``parquet://out`` (relative), ``parquet:///abs``, ``parquet+s3://b/p``, ``postgresql://...``."""
    if uri.startswith(("postgresql://", "postgres://")):
        return {"type": "postgres", "dsn": uri}
    m = re.match(r"^([a-z]+)(?:\+([a-z0-9]+))?://(.*)$", uri)
    if not m:
        raise ConfigError(f"cannot parse sink {uri!r}", hint="write e.g. parquet://out or postgresql://host/db")
    kind, store, rest = m.groups()
    return {"type": kind, "uri": f"{store}://{rest}" if store else rest}


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset variable without default is an error."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set", hint=f"export {name}=... or write ${{{name}:-default}}")

    return _ENV.sub(sub, text)


def _validate(doc: Any, where: str) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(doc)
    except ValidationError as exc:
        lines = [f"{where}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid pipeline:\n  " + "\n  ".join(lines)) from exc


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read a pipeline YAML file, with ``${ENV}`` interpolation."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file {str(p)!r}: {exc.strerror}", hint="check the path") from exc
    try:
        doc = yaml.safe_load(interpolate(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return _validate(doc, str(p))


def parse_pipeline(spec: str) -> PipelineConfig:
    """A pipeline YAML path, or the one-line form ``SOURCE | processor ... | SINK``.

    ``lake:///data/lake?start=2&end=9&network=testnet | ledgers | transactions | parquet://out``
    """
    if "|" not in spec:
        return load_pipeline(spec)
    parts = [p.strip() for p in spec.split("|") if p.strip()]
    source = LakeSource.from_uri(parts[0])
    processors, sinks = [], []
    for part in parts[1:]:
        if "://" in part:
            sinks.append(part)
        else:
            processors.append(part)
    return _validate(
        {"name": "oneliner", "source": source.model_dump(), "processors": processors, "sinks": sinks},
        "pipeline",
    )
