"""Durable state of the control plane: plans, pipelines and the audit trail.

SQLite (stdlib ``sqlite3``) by default; PostgreSQL when ``database`` is a ``postgresql://`` DSN.
Documents are stored as JSON text next to the few columns that queries filter on, so both
backends share one schema and the same statements.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any, Iterator

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
]


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
                self._conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
            for stmt in SCHEMA:
                self._exec(stmt.format(serial=serial))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open control-plane database {database!r}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                raise StoreError(f"cannot open control-plane database {_redact(database)!r}: {exc}") from exc
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

    # plans -----------------------------------------------------------------------------------

    def save_plan(self, plan: dict[str, Any]) -> None:
        self._upsert("cdp_plans", "status", plan["id"], plan["created_at"], plan["status"], plan)

    def get_plan(self, plan_id: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT doc FROM cdp_plans WHERE id = ?", (plan_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_plans(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._exec("SELECT doc FROM cdp_plans ORDER BY created_at DESC LIMIT ?", (limit,))
        return [json.loads(r[0]) for r in rows]

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
            (id_, created, state, json.dumps(doc, default=str)),
        )

    # audit -----------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str | None, outcome: str, detail: dict | None = None) -> None:
        """Append one event to the audit trail."""
        self._exec(
            "INSERT INTO cdp_audit (ts, actor, action, subject, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now_iso(), actor, action, subject, outcome, json.dumps(detail or {}, default=str)),
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

    def count_events(self, action: str, since_iso: str, outcome: str = "ok") -> int:
        rows = self._exec(
            "SELECT COUNT(*) FROM cdp_audit WHERE action = ? AND outcome = ? AND ts >= ?", (action, outcome, since_iso)
        )
        return int(rows[0][0])


def _audit_rows(rows: list[tuple]) -> Iterator[dict[str, Any]]:
    for seq, ts, actor, action, subject, outcome, detail in rows:
        yield {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject,
               "outcome": outcome, "detail": json.loads(detail)}


def _redact(dsn: str) -> str:
    import re

    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", dsn)
