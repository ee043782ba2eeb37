"""Control-plane settings: a YAML file, ``CDP_RAY_CONTROL_*`` environment variables, or code."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from cdp_ray.errors import ConfigError

# Package data (pyproject.toml ``package-data``): present in a checkout and in an installed wheel alike.
# The package always lives in a directory (its C extensions cannot load from a zip), so these are paths.
DEFAULT_TOOLCARDS = Path(str(files("cdp_ray") / "toolcards"))
DEFAULT_POLICIES = Path(str(files("cdp_ray") / "policies"))

Scope = Literal["read", "plan", "apply", "approve"]
ALL_SCOPES: tuple[str, ...] = ("read", "plan", "apply", "approve")


class TokenSpec(BaseModel):
    """A bearer token and the scopes it grants. Give ``sha256`` (hex of the token) to keep the
    token itself out of the configuration."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="principal name recorded in the audit trail")
    token: str | None = Field(None, description="the token in clear")
    sha256: str | None = Field(None, description="hex sha256 of the token")
    scopes: list[Scope] = Field(description="granted scopes: read, plan, apply, approve")


class Credential(BaseModel):
    """A secret the control plane holds for runs, referenced from plans as ``${credential:NAME}``.
    Give exactly one of ``value``, ``env`` or ``file``; the value is read when a run starts."""

    model_config = ConfigDict(extra="forbid")
    value: str | None = Field(None, repr=False, description="the secret itself (keep such a settings file private)")
    env: str | None = Field(None, description="environment variable of the control plane holding the secret")
    file: Path | None = Field(None, description="file holding the secret (a mounted secret); one trailing newline is dropped")

    @model_validator(mode="after")
    def _one_source(self) -> "Credential":
        if sum(x is not None for x in (self.value, self.env, self.file)) != 1:
            raise ValueError("a credential has exactly one of value, env or file")
        return self

    def read(self) -> str:
        """The secret (``KeyError`` for an unset variable, ``OSError`` for an unreadable file)."""
        if self.value is not None:
            return self.value
        if self.env is not None:
            if self.env not in os.environ:
                raise KeyError(f"environment variable {self.env} is not set")
            return os.environ[self.env]
        text = Path(self.file).read_text()  # type: ignore[arg-type]
        return text[:-1] if text.endswith("\n") else text


class CostRates(BaseModel):
    """Prices the cost estimate uses. Defaults are on-demand cloud list prices (USD)."""

    model_config = ConfigDict(extra="forbid")
    cpu_hour: float = Field(0.048, ge=0, description="one vCPU for one hour")
    read_gb: float = Field(0.0, ge=0, description="per GB read from the lake (egress; 0 inside the region)")
    write_gb: float = Field(0.0, ge=0, description="per GB written to sinks")
    requests_per_1000: float = Field(0.0004, ge=0, description="per 1000 object reads (S3 GET)")


class ControlSettings(BaseModel):
    """Everything the control plane needs to start."""

    model_config = ConfigDict(extra="forbid")
    database: str = Field(
        "cdp-ray-control.sqlite3",
        description="SQLite file path (or :memory:), or a postgresql:// DSN",
    )
    toolcards_dir: Path = Field(DEFAULT_TOOLCARDS, description="directory of generated tool cards")
    policies_dir: Path | None = Field(DEFAULT_POLICIES, description="directory of policy YAML files; none: no policies")
    tokens: list[TokenSpec] = Field(default_factory=list, description="bearer tokens; empty: auth disabled")
    rates: CostRates = Field(default_factory=CostRates)
    plan_ttl_seconds: int = Field(3600, ge=1, description="a plan expires this long after creation")
    probe_objects: int = Field(
        3, ge=0, description="lake objects whose size is read to scale an estimate to the range's era (0: off)"
    )
    default_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="workers assumed when a pipeline sets none"
    )
    distinct_approver: bool = Field(False, description="the plan's author may not approve it")
    ray_address: str | None = Field(
        None, description="Ray dashboard address (http://host:8265): apply submits Ray jobs; none: runs in-process"
    )
    public_url: str | None = Field(None, description="URL at which Ray jobs reach this control plane")
    webhook_url: str | None = Field(None, description="POSTed a JSON notice when a plan needs approval")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key of incoming approval webhooks")
    max_concurrent_runs: int = Field(2, ge=1, description="in-process pipeline runs at a time")
    heartbeat_timeout_seconds: float = Field(120, gt=0, description="a running pipeline silent this long is `stale`")
    tracing: str | None = Field(None, description="OpenTelemetry span exporters: none, console, otlp (comma-separated); "
                                "default: $OTEL_TRACES_EXPORTER, else none")
    stop_grace_seconds: float = Field(60, gt=0, description="a Ray job still running this long after a stop request is "
                                      "stopped through the dashboard (its chunks in flight are abandoned)")
    metrics_retention_seconds: float = Field(900, gt=0, description="a pipeline name's metric series are dropped this "
                                             "long after its last run ended")
    credentials: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")], Credential] = Field(
        default_factory=dict, description="named secrets plans refer to as ${credential:NAME}; never sent by clients")
    data_dir: Path = Field(default_factory=Path.cwd, description="relative local paths in client documents resolve "
                           "here and may not leave it (default: the working directory); made absolute when loaded")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body accepted (413 above)")
    max_document_bytes: int = Field(64 << 10, ge=1024, description="largest pipeline document in a plan, as JSON")
    preview_max_bytes: int = Field(16 << 20, ge=1, description="lake bytes one preview may read")
    webhook_tolerance_seconds: int = Field(300, ge=1, description="approval webhooks signed longer ago are refused")
    public_metrics: bool = Field(False, description="serve /metrics without a token (for scrapers that send none)")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ControlSettings":
        """Settings from a YAML file (``$CDP_RAY_CONTROL_CONFIG`` when no path), then environment
        overrides ``CDP_RAY_CONTROL_<FIELD>`` (JSON for lists and objects)."""
        doc: dict = {}
        path = path or os.environ.get("CDP_RAY_CONTROL_CONFIG")
        if path:
            try:
                doc = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read control-plane settings {str(path)!r}: {exc}") from exc
        for name, field in cls.model_fields.items():
            raw = os.environ.get(f"CDP_RAY_CONTROL_{name.upper()}")
            if raw is None:
                continue
            complex_ = name in ("tokens", "rates", "credentials")
            doc[name] = json.loads(raw) if complex_ else raw
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise ConfigError(f"invalid control-plane settings: {exc}") from exc
