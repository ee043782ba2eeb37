"""The processor extension point.

A processor turns decoded ledgers into rows of one Arrow table whose schema it declares once::

    @processor("ledgers", schema=LEDGERS_SCHEMA, primary_key=("sequence",), description="...")
    def ledgers(batch: list[Ledger], config: NoConfig) -> list[dict]:
        ...

The declaration drives Parquet files, PostgreSQL DDL, tool cards and docs. A processor may take a
pydantic ``config`` model (its JSON Schema is published in its tool card) and may return a
``pyarrow.Table`` instead of a row list: :func:`table_from_columns` and :func:`table_from_rows` build one
from column lists or from tuple rows in schema order, cheaper than dict rows.

User processors are declared the same way in any module. A pipeline names one by import path,
``module:function`` (or ``module:Class``, a decorated class whose instance is called like the
function); installed packages register theirs under the ``cdp_ray.processors`` entry point group
(``name = "module:attr"``), listed with the built-in ones. :func:`shipped_modules` says which user
modules Ray workers must be sent (those not installed).
"""

from __future__ import annotations

import importlib
import re
from contextlib import contextmanager
from contextvars import ContextVar
import sys
import sysconfig
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
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
        impl = fn() if isinstance(fn, type) else fn  # a class: one instance, called per batch
        REGISTRY[name] = Processor(name, schema, impl, description, pk, config, tuple(tags), ledger_column, first)
        return fn

    return register


ENTRY_POINT_GROUP = "cdp_ray.processors"
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_entry_points_loaded = False
_imports_refused: ContextVar[str | None] = ContextVar("cdp_ray_processor_imports_refused", default=None)


@contextmanager
def no_processor_imports(why: str):
    """Refuse processor import paths while loading untrusted documents (``why`` says whose)."""
    token = _imports_refused.set(why)
    try:
        yield
    finally:
        _imports_refused.reset(token)


def _as_processor(obj: Any, where: str) -> Processor:
    """The registered processor ``obj`` is (its function, class or :class:`Processor`)."""
    if isinstance(obj, Processor):
        REGISTRY.setdefault(obj.name, obj)
        return REGISTRY[obj.name]
    for p in REGISTRY.values():
        if p.fn is obj or type(p.fn) is obj:
            return p
    raise ConfigError(f"{where} is not a processor",
                      hint="decorate the function or class with @cdp_ray.processors.processor(name, schema=..., ...)")


def processor_from_path(path: str) -> Processor:
    """The processor at import path ``module:attr``, importing (and so registering) it."""
    if not IMPORT_PATH.fullmatch(path):
        raise ConfigError(f"processor import path {path!r} is not `module:attr`",
                          hint="e.g. `mypackage.processors:big_payments`")
    if _imports_refused.get():
        raise ConfigError(f"processor import path {path!r} refused: {_imports_refused.get()}",
                          hint="install the processor's package where this runs and declare it under the "
                               f"{ENTRY_POINT_GROUP} entry point group; then name it by its registered name")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of processor {path!r}: {exc}",
                          hint="install the module, or put its directory on PYTHONPATH") from exc
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no {attr!r} (processor {path!r})") from None
    return _as_processor(obj, f"{path!r}")


def load_entry_points() -> None:
    """Import the processors installed packages declare under the ``cdp_ray.processors`` entry point
    group, once. One that cannot be loaded is skipped with a warning naming it."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            _as_processor(ep.load(), f"entry point {ep.name} = {ep.value!r}")
        except Exception as exc:  # noqa: BLE001  (a broken plug-in must not hide the others)
            warnings.warn(f"processor entry point {ep.name} = {ep.value!r} ({ENTRY_POINT_GROUP}) was not loaded: {exc}",
                          stacklevel=2)


def get_processor(name: str) -> Processor:
    """Look a processor up by name or by import path ``module:attr``; unknown names get close-match
    suggestions."""
    import cdp_ray.processors  # noqa: F401  (registers the built-in processors and the entry points)

    if ":" in name:
        return processor_from_path(name)
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownComponentError("processor", name, list(REGISTRY)) from None


def _installed(path: Path) -> bool:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(Path(__file__).resolve().parents[1]))  # cdp_ray itself
    return any(path.is_relative_to(Path(r).resolve()) for r in roots)


def shipped_modules(procs: Iterable[Processor]) -> list[str]:
    """Local paths Ray workers need to import ``procs``: the top-level package (directory) or module
    (``.py`` file) of each processor defined outside cdp-ray and the installed packages, for
    ``runtime_env["py_modules"]``."""
    out: list[str] = []
    for p in procs:
        module = getattr(p.fn, "__module__", None) or ""  # a function's module, or an instance's class's
        top = sys.modules.get(module.partition(".")[0])
        where = list(getattr(top, "__path__", None) or []) or [getattr(top, "__file__", None)]
        if top is None or module == "__main__" or not where[0]:
            continue
        path = Path(where[0]).resolve()
        if not _installed(path) and str(path) not in out:
            out.append(str(path))
    return out
