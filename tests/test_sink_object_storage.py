"""The Parquet sink on S3 (moto) and GCS (emulator): the same files and tables as on local disk, and resume."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import run_pipeline
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE
from cdp_ray.sinks.parquet import ParquetSink, ParquetSinkConfig

FIRST, LAST = SAMPLE_RANGE[0], SAMPLE_RANGE[0] + 5
TABLES = ("ledgers", "transactions", "operations")


def _config(sink: dict) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "to-object-storage",
        "source": {"uri": str(SAMPLE_LAKE), "start": FIRST, "end": LAST, "network": "pubnet"},
        "processors": list(TABLES),
        "sinks": [sink],
        "options": {"ledgers_per_task": 4},
    })


def _files(fs, root: str) -> dict[str, bytes]:
    root = root.split("://", 1)[-1].rstrip("/")
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root) if p.endswith(".parquet")}


@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run_pipeline(_config({"parquet": str(out)}), engine="local")
    assert (summary.chunks, summary.ledgers) == (2, LAST - FIRST + 1)
    return out


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_parquet_sink_on_object_storage(store: str, local_out, s3_server, gcs_server) -> None:
    if store == "s3":
        uri, options = f"s3://{s3_server.bucket()}/tables", {"key": "testing", "secret": "testing"}
        sink = {"type": "parquet", "uri": uri, "endpoint_url": s3_server.endpoint_url, "storage_options": options}
    else:
        uri = f"gs://{gcs_server.bucket()}/tables"
        sink = {"type": "parquet", "uri": uri, "endpoint_url": gcs_server.endpoint_url,
                "storage_options": {"token": "anon", "project": "test"}}
    cfg = _config(sink)
    first = run_pipeline(cfg, engine="local")
    assert (first.chunks, first.rows_by_table["ledgers"]) == (2, LAST - FIRST + 1)

    parquet = ParquetSink(ParquetSinkConfig.model_validate(sink))
    remote = _files(parquet.fs, uri)
    local = {str(p.relative_to(local_out)): p for p in local_out.rglob("*.parquet")}
    assert sorted(remote) == sorted(local) == sorted(
        f"{t}/{r}.parquet" for t in TABLES for r in ("0063092982-0063092983", "0063092984-0063092987")
    )
    for name, path in local.items():
        with parquet.fs.open(f"{uri}/{name}", "rb") as f:
            assert pq.read_table(f).equals(pq.read_table(path)), name
    assert [(r.start, r.end) for r in parquet.committed(cfg.name)] == [(FIRST, FIRST + 1), (FIRST + 2, LAST)]

    again = run_pipeline(cfg, engine="local", resume=True)
    assert (again.chunks, again.skipped_chunks) == (0, 2)
    assert _files(parquet.fs, uri) == remote, "a resumed run rewrites nothing"
