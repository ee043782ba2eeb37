"""Durable state of the control plane: plans, pipelines and the audit trail.

SQLite (stdlib ``sqlite3``) by default; PostgreSQL when ``database`` is a ``postgresql://`` DSN.
Documents are stored as JSON text next to the few columns that queries filter on, so both
backends share one schema and the same statements. Documents and audit details are redacted before
they are written (:func:`cdp_ray.control.secrets.redact`). State changes that must not race (apply,
approve) are compare-and-swaps on a plan's status inside :meth:`Store.transaction`, which also
serializes every holder of the same lock across processes sharing the database.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any, Iterator

from cdp_ray.control.secrets import redact, redact_text
from cdp_ray.errors import CdpRayError

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cdp_plans (
        id TEXT PRIMARY KEY, created_at TEXT NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cdp_pipelines (
        id TEXT PRIMARY KEY, created_at TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cdp_audit (
        seq {serial}, ts TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT, outcome TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cdp_audit_subject ON cdp_audit (subject)",
    "CREATE INDEX IF NOT EXISTS cdp_audit_action_ts ON cdp_audit (action, ts)",
    """CREATE TABLE IF NOT EXISTS cdp_applies (
        pipeline_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, ts TEXT NOT NULL, actor TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cdp_applies_ts ON cdp_applies (ts)",
    "CREATE TABLE IF NOT EXISTS cdp_once (key TEXT PRIMARY KEY, expires_at TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS cdp_logs (
        pipeline_id TEXT NOT NULL, seq BIGINT NOT NULL, ts TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (pipeline_id, seq))""",
]
LOGS_KEPT = 1000


class StoreError(CdpRayError):
    """The control plane's database cannot be opened or written."""

    hint = "check the `database` setting: a writable SQLite path or a reachable postgresql:// DSN"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Store:
    """Thread-safe access to the control-plane tables over one connection."""

    def __init__(self, database: str):
        self.database = database
        self.postgres = database.startswith(("postgresql://", "postgres://"))
        self._lock = threading.RLock()
        try:
            if self.postgres:
                import psycopg

                self._conn = psycopg.connect(database, autocommit=True)
                serial = "BIGSERIAL PRIMARY KEY"
            else:
                self._conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None, timeout=30)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
            for stmt in SCHEMA:
                self._exec(stmt.format(serial=serial))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open control-plane database {database!r}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise StoreError(f"cannot open control-plane database {redact_text(database)!r}: {exc}") from exc
            raise

    @property
    def kind(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    def _exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        with self._lock:
            cur = self._conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self, lock: str) -> Iterator[None]:
        """One transaction holding the database-wide lock ``lock``: SQLite's write lock (``BEGIN
        IMMEDIATE``), a PostgreSQL advisory transaction lock. Committed on exit, rolled back on error."""
        with self._lock:
            if self.postgres:
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"cdp_ray.{lock}",))
                    yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # plans -----------------------------------------------------------------------------------

    def save_plan(self, plan: dict[str, Any]) -> None:
        self._upsert("cdp_plans", "status", plan["id"], plan["created_at"], plan["status"], plan)

    def swap_plan(self, plan_id: str, expected_status: str, plan: dict[str, Any]) -> bool:
        """Replace the plan only if its stored status is still ``expected_status``; whether it was."""
        rows = self._exec("UPDATE cdp_plans SET status = ?, doc = ? WHERE id = ? AND status = ? RETURNING id",
                          (plan["status"], json.dumps(redact(plan), default=str), plan_id, expected_status))
        return bool(rows)

    def get_plan(self, plan_id: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT doc FROM cdp_plans WHERE id = ?", (plan_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_plans(self, limit: int = 100, before: str | None = None) -> list[dict[str, Any]]:
        """The newest plans first; ``before``: only plans created before this time (the next page)."""
        if before is None:
            rows = self._exec("SELECT doc FROM cdp_plans ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = self._exec("SELECT doc FROM cdp_plans WHERE created_at < ? ORDER BY created_at DESC LIMIT ?",
                              (before, limit))
        return [json.loads(r[0]) for r in rows]

    def record_apply(self, pipeline_id: str, plan_id: str, actor: str) -> None:
        """Count an apply (rate policies count these); undone by :meth:`forget_apply` if the run never starts."""
        self._exec("INSERT INTO cdp_applies (pipeline_id, plan_id, ts, actor) VALUES (?, ?, ?, ?)",
                   (pipeline_id, plan_id, now_iso(), actor))

    def forget_apply(self, pipeline_id: str) -> None:
        self._exec("DELETE FROM cdp_applies WHERE pipeline_id = ?", (pipeline_id,))

    def count_applies(self, since_iso: str) -> int:
        return int(self._exec("SELECT COUNT(*) FROM cdp_applies WHERE ts >= ?", (since_iso,))[0][0])

    def first_use(self, key: str, expires_at_iso: str) -> bool:
        """Record ``key`` (a webhook signature, a one-time fetch) until ``expires_at_iso``; ``False`` if
        it was recorded before and has not expired."""
        self._exec("DELETE FROM cdp_once WHERE expires_at < ?", (now_iso(),))
        return bool(self._exec("INSERT INTO cdp_once (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING "
                               "RETURNING key", (key, expires_at_iso)))

    def plan_counts(self) -> dict[str, int]:
        """Stored plans by status (``expired`` is computed on read and not counted apart)."""
        return {status: int(n) for status, n in self._exec("SELECT status, COUNT(*) FROM cdp_plans GROUP BY status")}

    # pipelines -------------------------------------------------------------------------------

    def save_pipeline(self, doc: dict[str, Any]) -> None:
        self._upsert("cdp_pipelines", "state", doc["id"], doc["created_at"], doc["state"], doc)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT doc FROM cdp_pipelines WHERE id = ?", (pipeline_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_pipelines(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._exec("SELECT doc FROM cdp_pipelines ORDER BY created_at DESC LIMIT ?", (limit,))
        return [json.loads(r[0]) for r in rows]

    def _upsert(self, table: str, state_col: str, id_: str, created: str, state: str, doc: dict) -> None:
        self._exec(
            f"INSERT INTO {table} (id, created_at, {state_col}, doc) VALUES (?, ?, ?, ?) "
            f"ON CONFLICT (id) DO UPDATE SET {state_col} = excluded.{state_col}, doc = excluded.doc",
            (id_, created, state, json.dumps(redact(doc), default=str)),
        )

    # run logs --------------------------------------------------------------------------------

    def add_logs(self, pipeline_id: str, records: list[dict[str, Any]]) -> None:
        """Append a run's log records (a record already stored is skipped); the newest ``LOGS_KEPT`` are kept."""
        for r in records:
            self._exec("INSERT INTO cdp_logs (pipeline_id, seq, ts, level, message) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT (pipeline_id, seq) DO NOTHING",
                       (pipeline_id, int(r["seq"]), r["ts"], r["level"], redact_text(r["message"])))
        if records:
            self._exec("DELETE FROM cdp_logs WHERE pipeline_id = ? AND seq <= ?",
                       (pipeline_id, max(int(r["seq"]) for r in records) - LOGS_KEPT))

    def logs(self, pipeline_id: str, after: int = 0, limit: int = LOGS_KEPT) -> list[dict[str, Any]]:
        rows = self._exec("SELECT seq, ts, level, message FROM cdp_logs WHERE pipeline_id = ? AND seq > ? ORDER BY seq "
                          "LIMIT ?", (pipeline_id, after, limit))
        return [{"seq": int(q), "ts": ts, "level": lvl, "message": msg} for q, ts, lvl, msg in rows]

    # audit -----------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str | None, outcome: str, detail: dict | None = None) -> None:
        """Append one event to the audit trail."""
        self._exec(
            "INSERT INTO cdp_audit (ts, actor, action, subject, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now_iso(), actor, action, subject, outcome, json.dumps(redact(detail or {}), default=str)),
        )

    def audit_log(self, subject: str | None = None, action: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        where, params = [], []
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        sql = "SELECT seq, ts, actor, action, subject, outcome, detail FROM cdp_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._exec(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return list(_audit_rows(rows))


def _audit_rows(rows: list[tuple]) -> Iterator[dict[str, Any]]:
    for seq, ts, actor, action, subject, outcome, detail in rows:
        yield {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject,
               "outcome": outcome, "detail": json.loads(detail)}
