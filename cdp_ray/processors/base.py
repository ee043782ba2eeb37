"""The processor extension point.

A processor turns decoded ledgers into rows of one Arrow table whose schema it declares once::

    @processor("ledgers", schema=LEDGERS_SCHEMA, primary_key=("sequence",), description="...")
    def ledgers(batch: list[Ledger], config: NoConfig) -> list[dict]:
        ...

The declaration drives Parquet files, PostgreSQL DDL, tool cards and docs. A processor may take a
pydantic ``config`` model (its JSON Schema is published in its tool card) and may return a
``pyarrow.Table`` instead of a row list: :func:`table_from_columns` and :func:`table_from_rows` build one
from column lists or from tuple rows in schema order, cheaper than dict rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, ValidationError

from cdp_ray.collector import gc_paused
from cdp_ray.errors import ConfigError, UnknownComponentError
from cdp_ray.xdr import Ledger


class NoConfig(BaseModel):
    """A processor without options."""

    model_config = ConfigDict(extra="forbid")


def col(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    """A schema field carrying its description in the field metadata."""
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def column_array(values: Sequence, type_: pa.DataType) -> pa.Array:
    """``pa.array(values, type_)``; timestamps are converted once per distinct value (rows of a ledger share
    its close time, and pyarrow converts each aware ``datetime`` object slowly)."""
    if not pa.types.is_timestamp(type_) or len(values) < 16:
        return pa.array(values, type=type_)
    index = dict.fromkeys(values)
    if len(index) == 1:  # one ledger's rows
        return pa.repeat(pa.scalar(values[0], type=type_), len(values))
    for i, v in enumerate(index):
        index[v] = i
    positions = pa.array(list(map(index.__getitem__, values)), type=pa.int32())
    return pa.array(list(index), type=type_).take(positions)


def table_from_columns(schema: pa.Schema, columns: Sequence[Sequence]) -> pa.Table:
    """A table of ``schema`` from one value sequence per field, in schema order."""
    return pa.Table.from_arrays([column_array(c, f.type) for c, f in zip(columns, schema)], schema=schema)


def table_from_rows(schema: pa.Schema, rows: Sequence[tuple]) -> pa.Table:
    """A table of ``schema`` from rows given as tuples in schema order."""
    return table_from_columns(schema, list(zip(*rows)) if rows else [()] * len(schema))


def table_from_dicts(schema: pa.Schema, rows: Sequence[dict]) -> pa.Table:
    """A table of ``schema`` from dict rows; a key a row lacks is null."""
    names = schema.names
    try:
        columns = [[r[names[0]] for r in rows]] if len(names) == 1 else list(zip(*map(itemgetter(*names), rows)))
    except KeyError:
        columns = [[r.get(n) for r in rows] for n in names]
    return table_from_columns(schema, columns or [()] * len(names))


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
    first_seen_by: tuple[str, ...] = ()

    @property
    def first_seen(self) -> bool:
        """Whether the table holds one row per ``first_seen_by`` key for a whole run: the row of the
        earliest ledger. Each chunk emits its own first sightings; :func:`earliest_rows` merges them."""
        return bool(self.first_seen_by)

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
        """Run over decoded ledgers and return a table that conforms to ``schema`` (collector paused)."""
        parsed = self.parse_config(config)
        with gc_paused():
            out = self.fn(ledgers, parsed)
            if isinstance(out, pa.Table):
                if out.schema.equals(self.schema, check_metadata=True):
                    return out
                return out.select(self.schema.names).cast(self.schema)
            return table_from_dicts(self.schema, out if isinstance(out, list) else list(out))


def earliest_rows(proc: Processor, table: pa.Table) -> pa.Table:
    """For a :attr:`Processor.first_seen` table: one row per key, the one of the earliest ledger (the
    first such row on ties), in ledger order. Other tables are returned as they are."""
    if not proc.first_seen or table.num_rows == 0:
        return table
    seq = proc.sequence_column
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    ordered = indexed.sort_by([(seq, "ascending"), ("__row", "ascending")])
    ordered = ordered.append_column("__rank", pa.array(range(ordered.num_rows), pa.int64()))
    firsts = ordered.group_by(list(proc.first_seen_by), use_threads=False).aggregate([("__rank", "min")])
    keep = pc.sort_indices(firsts.column("__rank_min"))
    return ordered.take(firsts.column("__rank_min").take(keep)).drop_columns(["__row", "__rank"])


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
    first_seen_by: Iterable[str] = (),
) -> Callable[[ProcessorFn], ProcessorFn]:
    """Register ``fn`` as processor ``name`` with its declared output ``schema``.

    ``ledger_column`` names the column holding each row's ledger sequence (sinks replace a ledger
    range's rows by it); by default ``ledger_sequence``, or ``sequence`` when that is the column.
    ``first_seen_by`` makes the table one row per key over a whole run, at the earliest ledger (stellar-etl
    ``export_assets``): the key is then the table's primary key, and ``load``, ``scan`` and the PostgreSQL
    sink merge the chunks' rows.
    """
    pk = tuple(primary_key)
    missing = [c for c in pk if c not in schema.names]
    if missing:
        raise ValueError(f"processor {name}: primary key columns {missing} are not in its schema")
    if ledger_column is not None and ledger_column not in schema.names:
        raise ValueError(f"processor {name}: ledger_column {ledger_column!r} is not in its schema")
    first = tuple(first_seen_by)
    if first and first != pk:
        raise ValueError(f"processor {name}: first_seen_by {first} must be its primary key {pk}")

    def register(fn: ProcessorFn) -> ProcessorFn:
        if name in REGISTRY:
            raise ValueError(f"processor {name!r} is registered twice")
        REGISTRY[name] = Processor(name, schema, fn, description, pk, config, tuple(tags), ledger_column, first)
        return fn

    return register


def get_processor(name: str) -> Processor:
    """Look a processor up by name; unknown names get close-match suggestions."""
    import cdp_ray.processors  # noqa: F401  (registers the built-in processors)

    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownComponentError("processor", name, list(REGISTRY)) from None
