"""Shared fixtures: the real ledger data beside the project, and one Ray cluster per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
# gcsfs >= 2025.x probes each bucket's type over gRPC first; the GCS emulator speaks only JSON, so every probe
# waits out a 60 s timeout. Read when gcsfs is imported (Ray workers inherit it).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

ROOT = Path(__file__).resolve().parents[1]
PUBNET = "Public Global Stellar Network ; September 2015"
TESTNET = "Test SDF Network ; September 2015"


def _stellar_data() -> Path | None:
    for cand in (os.environ.get("CDP_RAY_STELLAR_DATA"), ROOT.parent / "shared" / "stellar-data"):
        if cand and Path(cand, "README.md").exists():
            return Path(cand)
    return None


STELLAR_DATA = _stellar_data()

from ray_head import private_ray  # noqa: E402,F401  (a Ray head with a dashboard, for real Ray jobs)
from storage_servers import gcs_server, s3_server, wallet_ledgers  # noqa: E402,F401  (object storage fixtures)


@pytest.fixture(scope="session")
def stellar_data() -> Path:
    """``shared/stellar-data`` beside the project (or ``$CDP_RAY_STELLAR_DATA``)."""
    if STELLAR_DATA is None:
        pytest.skip("shared/stellar-data not found beside the project; set CDP_RAY_STELLAR_DATA")
    return STELLAR_DATA


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (2 CPUs, small object store)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # a Ray of its own, never one another process started on this machine
            num_cpus=2,
            object_store_memory=256 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the test PostgreSQL (``$CDP_RAY_TEST_POSTGRES_DSN``, default 127.0.0.1:5432/test); skips when unreachable."""
    import psycopg

    dsn = os.environ.get("CDP_RAY_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {dsn}: {exc}")
    return dsn
