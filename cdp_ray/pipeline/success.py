"""Success criteria: whether a run did what it should, judged at its end from what it committed.

A pipeline's ``success:`` block declares them (all optional)::

    success:
      min_rows: {ledgers: 1, transactions: 100}   # rows this run committed, per table
      max_quarantined: 0                           # chunks this run quarantined
      reconcile: [ledger_transactions, ledger_operations]   # presets, or {name, expected, actual}
      estimate_within: 2.0                         # rows and bytes within 2x of the plan's estimate

Criteria judge the ranges this run committed (a resumed run does not recheck ranges an earlier run
committed and checked). Row and quarantine counts come from the run's own counters. A
reconciliation compares two per-ledger aggregates of the committed output, a window of ledgers at
a time, so memory does not grow with the range: in Parquet with polars lazy scans of the window's
files, in PostgreSQL with one aggregate query per window.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp_ray.pipeline import intervals
from cdp_ray.pipeline.intervals import Interval

WINDOW_LEDGERS = 50_000
EXAMPLES = 5
ESTIMATED = ("rows", "xdr_bytes", "bytes_written")


class Join(BaseModel):
    """Rows of the side's table kept or filtered through another table of the same ledgers."""

    model_config = ConfigDict(extra="forbid")
    table: str = Field(description="the other table")
    on: dict[str, str] = Field(min_length=1, max_length=1, description="{column of this table: column of the other}")


class Side(BaseModel):
    """A per-ledger aggregate of one table: the sum of ``sum`` columns, or the row count when empty."""

    model_config = ConfigDict(extra="forbid")
    table: str
    sum: list[str] = Field(default_factory=list, description="columns added up per ledger; none: count rows")
    where: dict[str, bool | int | str] = Field(default_factory=dict,
                                               description="keep rows whose column equals the value (this table's, else the joined one's)")
    join: Join | None = None

    def tables(self) -> list[str]:
        return [self.table] + ([self.join.table] if self.join else [])


class Reconciliation(BaseModel):
    """Per ledger, ``expected`` equals ``actual``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    expected: Side
    actual: Side


PRESETS: dict[str, Reconciliation] = {
    "ledger_transactions": Reconciliation(
        name="ledger_transactions",
        expected=Side(table="ledgers", sum=["transaction_count", "failed_transaction_count"]),
        actual=Side(table="transactions"),
    ),
    "ledger_operations": Reconciliation(
        name="ledger_operations",
        expected=Side(table="ledgers", sum=["operation_count"]),
        actual=Side(table="operations", where={"successful": True},
                    join=Join(table="transactions", on={"transaction_id": "id"})),
    ),
}


class SuccessCriteria(BaseModel):
    """What a finished run must satisfy; see :mod:`cdp_ray.pipeline.success`."""

    model_config = ConfigDict(extra="forbid")
    min_rows: dict[str, int] = Field(default_factory=dict, description="{table: rows this run must commit at least}")
    max_quarantined: int | None = Field(None, ge=0, description="chunks this run may quarantine at most")
    reconcile: list[Literal["ledger_transactions", "ledger_operations"] | Reconciliation] = Field(
        default_factory=list, description="per-ledger equalities between tables: a preset name "
        f"({', '.join(PRESETS)}) or {{name, expected, actual}}")
    estimate_within: float | None = Field(None, gt=1, description="rows, XDR bytes and bytes written within this "
                                          "factor of the estimate (judged where an estimate exists)")

    def reconciliations(self) -> list[Reconciliation]:
        return [PRESETS[r] if isinstance(r, str) else r for r in self.reconcile]

    def tables(self) -> set[str]:
        return set(self.min_rows) | {t for r in self.reconciliations() for s in (r.expected, r.actual) for t in s.tables()}

    @model_validator(mode="after")
    def _columns(self) -> "SuccessCriteria":
        from cdp_ray.processors.base import get_processor

        for r in self.reconciliations():
            for side in (r.expected, r.actual):
                names = set(get_processor(side.table).schema.names)
                other = set(get_processor(side.join.table).schema.names) if side.join else set()
                for c in side.sum:
                    if c not in names:
                        raise ValueError(f"reconcile {r.name}: {side.table} has no column {c!r}")
                for c in side.where:
                    if c not in names | other:
                        raise ValueError(f"reconcile {r.name}: no column {c!r} in {' or '.join(side.tables())}")
                if side.join:
                    (mine, theirs), = side.join.on.items()
                    if mine not in names or theirs not in other:
                        raise ValueError(f"reconcile {r.name}: cannot join {side.table}.{mine} to {side.join.table}.{theirs}")
        return self


@dataclass
class Check:
    criterion: str
    name: str
    passed: bool | None  # None: not judged (no estimate, no readable sink)
    detail: str
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Verdict:
    """The criteria's results: ``passed`` is false when any judged check failed."""

    checks: list[Check]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Verdict":
        return cls([Check(**c) for c in doc.get("checks", [])])

    def with_check(self, check: Check) -> "Verdict":
        """This verdict with ``check`` replacing the one of the same criterion and name."""
        return Verdict([c for c in self.checks if (c.criterion, c.name) != (check.criterion, check.name)] + [check])

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


def evaluate(cfg: Any, summary: Any, committed: list[Interval], ratios: dict[str, float | None] | None = None) -> Verdict | None:
    """Judge ``cfg.success`` over the run's ``summary`` and the ``committed`` ledger intervals; ``None``
    when the pipeline declares no criteria."""
    crit: SuccessCriteria | None = cfg.success
    if crit is None:
        return None
    checks: list[Check] = []
    for table, least in crit.min_rows.items():
        n = int(summary.rows_by_table.get(table, 0))
        checks.append(Check("min_rows", table, n >= least, f"{n} rows committed; at least {least} required"))
    if crit.max_quarantined is not None:
        n = summary.quarantined_chunks
        checks.append(Check("max_quarantined", "quarantined", n <= crit.max_quarantined,
                            f"{n} chunks quarantined; at most {crit.max_quarantined} allowed"))
    if crit.estimate_within is not None:
        checks.append(estimate_check(crit.estimate_within, ratios))
    recs = crit.reconciliations()
    if recs:
        try:
            reader = _reader(cfg)
        except Exception as exc:
            return Verdict(checks + [Check("reconcile", r.name, False, f"cannot open the output: {exc}") for r in recs])
        for r in recs:
            if reader is None:
                checks.append(Check("reconcile", r.name, None, "no Parquet, PostgreSQL or Iceberg sink to read the output from"))
                continue
            checks.append(_reconcile(reader, r, committed))
        if reader is not None:
            reader.close()
    return Verdict(checks)


def estimate_check(factor: float, ratios: dict[str, float | None] | None) -> Check:
    """Rows, XDR bytes and bytes written each within ``factor`` of the estimate (``ratios``: actual / estimate)."""
    judged = {k: v for k, v in (ratios or {}).items() if k in ESTIMATED and v is not None}
    if not judged:
        return Check("estimate_within", "estimate", None, "no estimate for this run")
    off = {k: v for k, v in judged.items() if not (1 / factor <= v <= factor)}
    shown = ", ".join(f"{k} {v:.2f}x" for k, v in sorted(judged.items()))
    return Check("estimate_within", "estimate", not off, f"actual/estimate: {shown}; allowed within {factor}x")


class Committed:
    """The ledger intervals a run committed, from its chunk rows (merged: grows with gaps, not chunks)."""

    def __init__(self) -> None:
        self.intervals: list[Interval] = []

    def add(self, row: dict[str, Any]) -> None:
        if row.get("status") != "committed":
            return
        s, e = int(row["start"]), int(row["end"])
        i = bisect.bisect_left(self.intervals, (s, e))
        merged = [*self.intervals[max(0, i - 1):i + 1], (s, e)]
        self.intervals[max(0, i - 1):i + 1] = intervals.merge(merged)


def _windows(committed: list[Interval]) -> list[Interval]:
    out = []
    for s, e in committed:
        while s <= e:
            out.append((s, min(e, s + WINDOW_LEDGERS - 1)))
            s += WINDOW_LEDGERS
    return out


def _reconcile(reader: "_Reader", r: Reconciliation, committed: list[Interval]) -> Check:
    bad, checked, examples = 0, 0, []
    for a, b in _windows(committed):
        try:
            n, ex = reader.mismatches(r, a, b)
        except Exception as exc:  # an unreadable output fails the check, with the reason
            return Check("reconcile", r.name, False, f"cannot read the output of ledgers {a}-{b}: {type(exc).__name__}: {exc}")
        bad += n
        checked += b - a + 1
        examples += ex[: EXAMPLES - len(examples)]
    return Check("reconcile", r.name, bad == 0,
                 f"{bad} of {checked} ledgers differ between {_describe(r.expected)} and {_describe(r.actual)}", examples)


def _describe(side: Side) -> str:
    what = " + ".join(f"{side.table}.{c}" for c in side.sum) if side.sum else f"rows of {side.table}"
    if side.where:
        what += " where " + " and ".join(f"{k}={v}" for k, v in side.where.items())
    return what


class _Reader:
    def mismatches(self, r: Reconciliation, a: int, b: int) -> tuple[int, list[dict[str, Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _reader(cfg: Any) -> _Reader | None:
    from cdp_ray.sinks.base import make_sink

    for s in cfg.sinks:
        if s.type == "parquet":
            return _ParquetReader(make_sink(s), cfg.name)
        if s.type == "postgres":
            return _PostgresReader(make_sink(s))
        if s.type == "iceberg":
            return _IcebergReader(make_sink(s), cfg.name)
    return None


class _ParquetReader(_Reader):
    """Polars lazy scans of the committed files whose range lies in the window (one listing per table)."""

    def __init__(self, sink: Any, pipeline: str):
        self.sink, self.pipeline = sink, pipeline
        self._files: dict[str, list[tuple[int, int, str]]] = {}

    def files(self, table: str, a: int, b: int) -> list[str]:
        if table not in self._files:
            from cdp_ray.sinks.parquet import _DATA_FILE

            listed = []
            for f in self.sink.committed_files(self.pipeline, table):
                m = _DATA_FILE.search(f.rsplit("/", 1)[-1])
                listed.append((int(m.group(1)), int(m.group(2)), f))
            self._files[table] = listed
        return [f for s, e, f in self._files[table] if s <= b and e >= a]

    def scan(self, table: str, a: int, b: int):
        """``table``'s committed rows of ledgers ``a``-``b``."""
        import polars as pl

        from cdp_ray.processors.base import get_processor

        proc = get_processor(table)
        files = self.files(table, a, b)
        opts = None if self.sink.local else self.sink.config.fsspec_options()
        lf = pl.scan_parquet(files, storage_options=opts) if files else pl.LazyFrame(schema=pl.from_arrow(
            proc.schema.empty_table()).schema)
        return lf.filter(pl.col(proc.sequence_column).is_between(a, b))

    def side(self, side: Side, a: int, b: int):
        import polars as pl

        from cdp_ray.processors.base import get_processor

        seq = get_processor(side.table).sequence_column
        scan = lambda table: self.scan(table, a, b)  # noqa: E731
        lf = scan(side.table)
        if side.join:
            (mine, theirs), = side.join.on.items()
            other = scan(side.join.table).select(pl.col(theirs).alias(mine),
                                                 *[pl.col(c) for c in side.where if c not in lf.collect_schema().names()])
            lf = lf.join(other, on=mine, how="inner")
        for col, value in side.where.items():
            lf = lf.filter(pl.col(col) == value)
        value = pl.sum_horizontal([pl.col(c).cast(pl.Int64) for c in side.sum]).sum() if side.sum else pl.len()
        return lf.group_by(pl.col(seq).cast(pl.Int64).alias("ledger")).agg(value.cast(pl.Int64).alias("v"))

    def mismatches(self, r: Reconciliation, a: int, b: int) -> tuple[int, list[dict[str, Any]]]:
        import polars as pl

        both = self.side(r.expected, a, b).join(self.side(r.actual, a, b), on="ledger", how="full", coalesce=True,
                                               suffix="_actual")
        diff = both.select("ledger", pl.col("v").fill_null(0).alias("expected"),
                           pl.col("v_actual").fill_null(0).alias("actual")).filter(pl.col("expected") != pl.col("actual"))
        out = diff.sort("ledger").collect()
        return out.height, out.head(EXAMPLES).to_dicts()


class _IcebergReader(_ParquetReader):
    """Polars lazy scans of the tables' current snapshots (``pl.scan_iceberg``), filtered to the window."""

    def __init__(self, sink: Any, pipeline: str):
        super().__init__(sink, pipeline)
        self.tables: dict[str, Any] = {}

    def scan(self, table: str, a: int, b: int):
        import polars as pl

        from cdp_ray.processors.base import get_processor

        if table not in self.tables:
            self.tables[table] = self.sink.load(table)
        return pl.scan_iceberg(self.tables[table]).filter(pl.col(get_processor(table).sequence_column).is_between(a, b))


class _PostgresReader(_Reader):
    """One aggregate query per window, run by PostgreSQL."""

    def __init__(self, sink: Any):
        import psycopg

        self.schema = sink.schema
        self.conn = psycopg.connect(sink.config.resolved_dsn(), autocommit=True)

    def side(self, side: Side, a: int, b: int) -> tuple[Any, list[Any]]:
        from psycopg import sql

        from cdp_ray.processors.base import get_processor

        seq = get_processor(side.table).sequence_column
        t = sql.Identifier(self.schema, side.table)
        value = (sql.SQL(" + ").join(sql.SQL("SUM(t.{})").format(sql.Identifier(c)) for c in side.sum)
                 if side.sum else sql.SQL("COUNT(*)"))
        joins, conds, params = sql.SQL(""), [sql.SQL("t.{} BETWEEN %s AND %s").format(sql.Identifier(seq))], [a, b]
        cols = set(get_processor(side.table).schema.names)
        if side.join:
            (mine, theirs), = side.join.on.items()
            jseq = get_processor(side.join.table).sequence_column
            joins = sql.SQL(" JOIN {} j ON t.{} = j.{} AND j.{} BETWEEN %s AND %s").format(
                sql.Identifier(self.schema, side.join.table), sql.Identifier(mine), sql.Identifier(theirs), sql.Identifier(jseq))
            params = [a, b, a, b]
        for col, v in side.where.items():
            conds.append(sql.SQL("{}.{} = %s").format(sql.Identifier("t" if col in cols else "j"), sql.Identifier(col)))
            params.append(v)
        query = sql.SQL("SELECT t.{seq}::bigint AS ledger, ({value})::bigint AS v FROM {t} t{joins} WHERE {conds} GROUP BY 1").format(
            seq=sql.Identifier(seq), value=value, t=t, joins=joins, conds=sql.SQL(" AND ").join(conds))
        return query, params

    def mismatches(self, r: Reconciliation, a: int, b: int) -> tuple[int, list[dict[str, Any]]]:
        from psycopg import sql

        (eq, ep), (aq, ap) = self.side(r.expected, a, b), self.side(r.actual, a, b)
        query = sql.SQL("WITH e AS ({}), a AS ({}) SELECT ledger, COALESCE(e.v, 0), COALESCE(a.v, 0), "
                        "COUNT(*) OVER () FROM e FULL JOIN a USING (ledger) WHERE COALESCE(e.v, 0) <> COALESCE(a.v, 0) "
                        "ORDER BY ledger LIMIT %s").format(eq, aq)
        rows = self.conn.execute(query, [*ep, *ap, EXAMPLES]).fetchall()
        return (int(rows[0][3]) if rows else 0), [{"ledger": l, "expected": e, "actual": x} for l, e, x, _ in rows]

    def close(self) -> None:
        self.conn.close()
