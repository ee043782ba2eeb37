"""Pipeline templates for ``cdp-ray init``: YAML files with ``{{ param }}`` placeholders.

Every template reads the bundled sample lake by default, so the written pipeline runs as is; point
``--lake`` at your own lake (or the public pubnet lake) and set the range to go further.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdp_ray.errors import ConfigError, UnknownComponentError
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE

HERE = Path(__file__).parent
PUBLIC_PUBNET_LAKE = "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet"
SAMPLE_CONTRACT = "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"  # most events in the sample


class Template(BaseModel):
    """One ``cdp-ray init`` template."""

    name: str
    title: str
    description: str
    default_out: str
    needs: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.yaml"


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(name="core", title="Core tables", default_out="out/core",
                 description="ledgers, transactions, operations, effects, trades and assets, as stellar-etl exports them"),
        Template(name="payments", title="Payments", default_out="out/payments",
                 description="every payment-like operation (payment, path payments, create_account) with amounts and assets"),
        Template(name="contract-events", title="Contract events", default_out="out/contract-events", needs=("contract",),
                 description="the events one Soroban contract emitted, topics and data decoded to JSON"),
        Template(name="token-transfers", title="Token transfers", default_out="out/token-transfers",
                 description="SEP-41 token movements (transfer, mint, burn, clawback, fee) of classic assets and contracts"),
        Template(name="iceberg", title="Iceberg lakehouse", default_out="out/iceberg",
                 description="ledgers, transactions, operations and trades as Apache Iceberg tables (SQLite catalog, local warehouse)"),
    )
}


class TemplateParams(BaseModel):
    """Parameters of a template; every one has a default that runs on the bundled sample."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="pipeline name (default: the template's name)")
    lake: str = Field(str(SAMPLE_LAKE), description="lake URI: a path, s3://bucket/prefix or gs://bucket/prefix")
    start: int | None = Field(None, ge=2, description="first ledger")
    end: int | None = Field(None, ge=2, description="last ledger")
    start_time: datetime | None = Field(None, description="first ledger closed at or after this UTC time")
    end_time: datetime | None = Field(None, description="last ledger closed at or before this UTC time")
    network: str = Field("pubnet", description="pubnet, testnet, futurenet or a passphrase")
    out: str | None = Field(None, description="output directory (Parquet files, or the Iceberg warehouse)")
    contract: str = Field(SAMPLE_CONTRACT, description="C... contract id (contract-events)")
    ledgers_per_task: int | Literal["auto"] = Field("auto", description="ledgers per chunk, or auto (sized by bytes)")

    @field_validator("contract")
    @classmethod
    def _contract(cls, v: str) -> str:
        if not re.fullmatch(r"C[A-Z2-7]{55}", v):
            raise ValueError(f"{v!r} is not a contract id: expected C followed by 55 base32 characters")
        return v


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UnknownComponentError("template", name, list(TEMPLATES)) from None


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt.tzinfo is None or dt.utcoffset().total_seconds() == 0 else dt.isoformat()


def _source_block(p: TemplateParams) -> str:
    lines = []
    if p.lake == str(SAMPLE_LAKE):
        lines.append("  # The sample lake bundled with cdp-ray (10 pubnet ledgers). For all of pubnet, use")
        lines.append(f"  #   uri: {PUBLIC_PUBNET_LAKE}")
        lines.append("  #   anonymous: true")
    lines.append(f"  uri: {p.lake}")
    default_start, default_end = SAMPLE_RANGE if p.lake == str(SAMPLE_LAKE) else (None, None)
    if p.start_time is not None:
        lines.append(f"  start_time: {_time(p.start_time)}   # resolved to the first ledger closed at or after it")
    else:
        start = p.start or default_start
        if start is None:
            raise ConfigError("no start ledger", hint="pass --start LEDGER or --start-time UTC_TIME")
        lines.append(f"  start: {start}")
    if p.end_time is not None:
        lines.append(f"  end_time: {_time(p.end_time)}     # resolved to the last ledger closed at or before it")
    else:
        end = p.end or (default_end if p.start is None and p.start_time is None else None)
        if end is None:
            raise ConfigError("no end ledger", hint="pass --end LEDGER or --end-time UTC_TIME")
        lines.append(f"  end: {end}")
    lines.append(f"  network: {p.network}")
    if p.lake.startswith(PUBLIC_PUBNET_LAKE.rsplit("/", 3)[0]):
        lines.append("  anonymous: true   # public bucket: unsigned requests")
    return "\n".join(lines)


def render(template: str, params: TemplateParams, path: str = "pipeline.yaml") -> str:
    """The pipeline YAML of ``template`` with ``params`` filled in."""
    t = get_template(template)
    values = {
        "title": t.title,
        "description": t.description,
        "path": path,
        "name": params.name or t.name,
        "source": _source_block(params),
        "out": params.out or t.default_out,
        "contract": params.contract,
        "ledgers_per_task": str(params.ledgers_per_task),
    }
    text = t.path.read_text()
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: values[m.group(1)], text)
