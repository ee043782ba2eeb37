"""PostgreSQL DDL from a processor's declared Arrow schema.

One mapping serves the Postgres sink (create and check tables) and the docs (``render_ddl``). Type
names are the ones ``format_type()`` reports, so a table in the database can be compared with the
declaration column by column.

=====================  ===========================  ==========================================
Arrow                  PostgreSQL                   note
=====================  ===========================  ==========================================
int8, int16, uint8     smallint
int32, uint16          integer
int64, uint32          bigint                       uint32 fits a bigint
uint64                 numeric(20,0)                the full range; Postgres has no unsigned
float16, float32       real
float64                double precision
bool                   boolean
string, large_string   text
binary, fixed binary   bytea
timestamp (tz)         timestamp with time zone     timestamp without tz -> timestamp
date32, date64         date
decimal128(p, s)       numeric(p,s)
list<T>                T[]                          one level; nested lists and structs -> jsonb
struct, map            jsonb
dictionary<T>          as T
=====================  ===========================  ==========================================
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from cdp_ray.errors import SinkError
from cdp_ray.processors.base import Processor


def pg_type(t: pa.DataType) -> str:
    """The PostgreSQL type (as ``format_type()`` names it) that stores Arrow type ``t``."""
    if pa.types.is_dictionary(t):
        return pg_type(t.value_type)
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return "bigint"
    if pa.types.is_uint64(t):
        return "numeric(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_struct(inner) or pa.types.is_map(inner):
            return "jsonb"
        return f"{pg_type(inner)}[]"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "jsonb"
    raise SinkError(f"Arrow type {t} has no PostgreSQL mapping", hint="declare the column with a supported type")


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{ident(schema)}.{ident(table)}"


def literal(text: str) -> str:
    """A single-quoted SQL string literal (for comments)."""
    return "'" + text.replace("'", "''") + "'"


def create_table_sql(processor: Processor, schema: str = "public", table: str | None = None) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` with primary key, ledger index and column comments."""
    table = table or processor.name
    qname = qualified(schema, table)
    cols = [
        f"  {ident(f.name)} {pg_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in processor.schema
    ]
    if processor.primary_key:
        cols.append(f"  PRIMARY KEY ({', '.join(ident(c) for c in processor.primary_key)})")
    stmts = [f"CREATE TABLE IF NOT EXISTS {qname} (\n" + ",\n".join(cols) + "\n)"]
    seq = processor.sequence_column
    if seq and (not processor.primary_key or processor.primary_key[0] != seq):
        stmts.append(f"CREATE INDEX IF NOT EXISTS {ident(f'{table}_{seq}_idx')} ON {qname} ({ident(seq)})")
    if processor.description:
        stmts.append(f"COMMENT ON TABLE {qname} IS {literal(processor.description)}")
    for f in processor.schema:
        desc = (f.metadata or {}).get(b"description")
        if desc:
            stmts.append(f"COMMENT ON COLUMN {qname}.{ident(f.name)} IS {literal(desc.decode())}")
    return stmts


def seen_table(name: str) -> str:
    """The table of a first-seen table's per-range sightings."""
    return f"cdp_ray_seen_{name}"


def seen_processor(proc: Processor) -> Processor:
    """``proc`` as its sightings table: every range's first sightings, keyed by ledger and key."""
    return replace(proc, primary_key=(proc.sequence_column, *proc.first_seen_by), first_seen_by=(),
                   description=f"first sightings per committed range behind {proc.name} (cdp-ray bookkeeping)")


def render_ddl(processor: Processor, schema: str = "public") -> str:
    """The DDL of ``processor``'s table as one SQL script (for docs and manual setup); a first-seen table's
    sightings table too."""
    stmts = create_table_sql(processor, schema)
    if processor.first_seen:
        stmts += create_table_sql(seen_processor(processor), schema, seen_table(processor.name))
    return ";\n".join(stmts) + ";\n"


def schema_differences(
    processor: Processor, columns: list[tuple[str, str, bool, bool]]
) -> list[str]:
    """How a table in the database disagrees with ``processor``'s schema, one line per column.

    ``columns`` are ``(name, format_type, not_null, has_default)`` rows of the existing table. Extra
    columns are allowed when they are nullable or have a default (COPY leaves them to the database).
    """
    found = {name: (typ, not_null, has_default) for name, typ, not_null, has_default in columns}
    problems = []
    for f in processor.schema:
        want = pg_type(f.type)
        if f.name not in found:
            problems.append(f"column {f.name!r} is missing (expected {want})")
            continue
        typ = found[f.name][0]
        if typ != want:
            problems.append(f"column {f.name!r} is {typ}, expected {want}")
    declared = set(processor.schema.names)
    for name, (typ, not_null, has_default) in found.items():
        if name not in declared and not_null and not has_default:
            problems.append(f"column {name!r} ({typ} NOT NULL, no default) is not produced by the processor")
    return problems
