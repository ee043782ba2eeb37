"""Parquet sink: one file per table per ledger range, local or on object storage.

Layout: ``{uri}/{table}/{start:010d}-{end:010d}.parquet``. A file is written under a temporary
name and renamed into place, so readers never see a partial file and a rerun of a range replaces
its file instead of adding a second one.
"""

from __future__ import annotations

import io
import uuid
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from cdp_ray.errors import SinkError
from cdp_ray.processors.base import Processor
from cdp_ray.sinks.base import Sink, SinkConfig, sink


class ParquetSinkConfig(SinkConfig):
    """Write Parquet files under ``uri`` (local path, s3:// or gs://)."""

    type: Literal["parquet"] = "parquet"
    uri: str = Field(description="output root: local path, s3://bucket/prefix or gs://bucket/prefix")
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet codec")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="extra fsspec options")


def range_file(table: str, start: int, end: int) -> str:
    return f"{table}/{start:010d}-{end:010d}.parquet"


@sink("parquet", ParquetSinkConfig)
class ParquetSink(Sink):
    config: ParquetSinkConfig

    def __init__(self, config: ParquetSinkConfig):
        super().__init__(config)
        self.fs, self.root = fsspec.core.url_to_fs(config.uri, **config.storage_options)
        self.root = self.root.rstrip("/")

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def write_range(self, start: int, end: int, tables: dict[str, tuple[Processor, pa.Table]]) -> dict[str, int]:
        written = {}
        for name, (proc, table) in tables.items():
            buf = io.BytesIO()
            codec = None if self.config.compression == "none" else self.config.compression
            pq.write_table(table.cast(proc.schema), buf, compression=codec)
            final = self.path(range_file(name, start, end))
            tmp = self.path(f"{name}/_tmp-{uuid.uuid4().hex}.parquet")
            try:
                self.fs.makedirs(self.path(name), exist_ok=True)
                self.fs.pipe_file(tmp, buf.getvalue())
                self.fs.mv(tmp, final)
            except OSError as exc:
                raise SinkError(f"writing {final} failed: {exc}") from exc
            written[name] = buf.tell()
        return written
