"""The processor extension point.

A processor turns decoded ledgers into rows of one Arrow table whose schema it declares once::

    @processor("ledgers", schema=LEDGERS_SCHEMA, primary_key=("sequence",), description="...")
    def ledgers(batch: list[Ledger], config: NoConfig) -> list[dict]:
        ...

The declaration drives Parquet files, PostgreSQL DDL, tool cards and docs. A processor may take a
pydantic ``config`` model (its JSON Schema is published in its tool card) and may return a
``pyarrow.Table`` instead of a row list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from cdp_ray.errors import ConfigError, UnknownComponentError
from cdp_ray.xdr import Ledger


class NoConfig(BaseModel):
    """A processor without options."""

    model_config = ConfigDict(extra="forbid")


def col(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    """A schema field carrying its description in the field metadata."""
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


ProcessorFn = Callable[[list[Ledger], Any], "list[dict] | pa.Table"]


@dataclass(frozen=True)
class Processor:
    """A registered processor: name, output schema, config model and the function itself."""

    name: str
    schema: pa.Schema
    fn: ProcessorFn
    description: str
    primary_key: tuple[str, ...]
    config_model: type[BaseModel] = NoConfig
    tags: tuple[str, ...] = field(default_factory=tuple)
    ledger_column: str | None = None

    @property
    def sequence_column(self) -> str | None:
        """The column holding each row's ledger sequence: declared, else ``ledger_sequence`` or ``sequence``."""
        if self.ledger_column:
            return self.ledger_column
        return next((c for c in ("ledger_sequence", "sequence") if c in self.schema.names), None)

    def parse_config(self, config: dict | BaseModel | None) -> BaseModel:
        """Validate ``config`` against the processor's model."""
        if isinstance(config, self.config_model):
            return config
        try:
            return self.config_model.model_validate(config or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid config for processor {self.name!r}: {exc}") from exc

    def process(self, ledgers: list[Ledger], config: dict | BaseModel | None = None) -> pa.Table:
        """Run over decoded ledgers and return a table that conforms to ``schema``."""
        out = self.fn(ledgers, self.parse_config(config))
        if isinstance(out, pa.Table):
            return out.select(self.schema.names).cast(self.schema)
        rows = out if isinstance(out, list) else list(out)
        # column lists built here, then one conversion per column: cheaper than from_pylist's per-row path
        return pa.Table.from_pydict({n: [r.get(n) for r in rows] for n in self.schema.names}, schema=self.schema)


REGISTRY: dict[str, Processor] = {}


def processor(
    name: str,
    *,
    schema: pa.Schema,
    description: str,
    primary_key: Iterable[str],
    config: type[BaseModel] = NoConfig,
    tags: Iterable[str] = (),
    ledger_column: str | None = None,
) -> Callable[[ProcessorFn], ProcessorFn]:
    """Register ``fn`` as processor ``name`` with its declared output ``schema``.

    ``ledger_column`` names the column holding each row's ledger sequence (sinks replace a ledger
    range's rows by it); by default ``ledger_sequence``, or ``sequence`` when that is the column.
    """
    pk = tuple(primary_key)
    missing = [c for c in pk if c not in schema.names]
    if missing:
        raise ValueError(f"processor {name}: primary key columns {missing} are not in its schema")
    if ledger_column is not None and ledger_column not in schema.names:
        raise ValueError(f"processor {name}: ledger_column {ledger_column!r} is not in its schema")

    def register(fn: ProcessorFn) -> ProcessorFn:
        if name in REGISTRY:
            raise ValueError(f"processor {name!r} is registered twice")
        REGISTRY[name] = Processor(name, schema, fn, description, pk, config, tuple(tags), ledger_column)
        return fn

    return register


def get_processor(name: str) -> Processor:
    """Look a processor up by name; unknown names get close-match suggestions."""
    import cdp_ray.processors  # noqa: F401  (registers the built-in processors)

    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownComponentError("processor", name, list(REGISTRY)) from None
