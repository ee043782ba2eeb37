"""The lake source's configuration."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlparse, urlunparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp_ray.errors import ConfigError
from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.lake.formats import FileFormat
from cdp_ray.lake.store import Layout
from cdp_ray.networks import resolve_passphrase

MAX_LEDGER = 2**32 - 1  # ledger sequences are uint32 (LedgerHeader.ledgerSeq)


class LakeSource(BaseModel):
    """Where ledgers come from and which ones."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="lake root: local path, file://, s3://bucket/prefix or gs://bucket/prefix")
    start: int = Field(ge=1, le=MAX_LEDGER, description="first ledger sequence (inclusive)")
    end: int = Field(ge=1, le=MAX_LEDGER, description="last ledger sequence (inclusive; a ledger sequence is a "
                     "uint32, at most 4294967295)")
    network: str = Field(
        "pubnet", description="pubnet, testnet, futurenet, or a literal network passphrase"
    )
    layout: Layout = Field(
        "auto", description="`lake` (SEP-54 keys computed from the range), `files` (a directory of ledger files), or `auto`"
    )
    file_format: FileFormat = Field("auto", description="ledger file shape; `auto` detects it from content")
    ledgers_per_file: int | None = Field(None, ge=1, description="lake schema when the lake has no .config.json")
    files_per_partition: int | None = Field(None, ge=1, description="lake schema when the lake has no .config.json")
    anonymous: bool = Field(False, description="unsigned requests to object storage (public buckets)")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto, ...)")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="extra fsspec options")
    verify: bool = Field(True, description="check header hashes and the hash chain of every ledger")
    retries: int = Field(3, ge=0, description="retries of a failed object read, with exponential backoff")

    @model_validator(mode="after")
    def _range(self) -> "LakeSource":
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    @property
    def network_passphrase(self) -> str:
        return resolve_passphrase(self.network)

    @staticmethod
    def uri_fields(uri: str) -> dict[str, Any]:
        """``lake:///path?start=1&end=2`` or ``s3://b/p?start_time=..`` -> ``{"uri": root, **query}`` (unvalidated)."""
        parsed = urlparse(uri)
        scheme = "" if parsed.scheme == "lake" else parsed.scheme
        base = urlunparse((scheme, parsed.netloc, parsed.path, "", "", ""))
        if scheme == "" and base.startswith("//"):
            base = base[2:]
        return {"uri": base, **dict(parse_qsl(parsed.query))}

    @classmethod
    def from_uri(cls, uri: str, **overrides: Any) -> "LakeSource":
        """``lake:///path?start=1&end=2&network=testnet`` or ``s3://b/p?start=..`` -> source."""
        fields = {**cls.uri_fields(uri), **overrides}
        if "start" not in fields or "end" not in fields:
            raise ConfigError(
                f"source {uri!r} has no ledger range",
                hint="add ?start=FIRST&end=LAST to the source URI",
            )
        return cls(**fields)

    def lake_schema(self) -> LakeSchema | None:
        if self.ledgers_per_file is None and self.files_per_partition is None:
            return None
        return LakeSchema(
            ledgers_per_file=self.ledgers_per_file or 1,
            files_per_partition=self.files_per_partition or 64000,
        )

    def fsspec_options(self) -> dict[str, Any]:
        """fsspec options for the lake's filesystem: ``storage_options`` plus ``anonymous``/``endpoint_url``."""
        opts = dict(self.storage_options)
        if self.uri.startswith(("s3://", "s3a://")):
            if self.anonymous:
                opts.setdefault("anon", True)
            if self.endpoint_url:
                opts["client_kwargs"] = {**opts.get("client_kwargs", {}), "endpoint_url": self.endpoint_url}
        elif self.uri.startswith(("gs://", "gcs://")):
            if self.anonymous:
                opts.setdefault("token", "anon")
            if self.endpoint_url:
                opts.setdefault("endpoint_url", self.endpoint_url)
        return opts

    def open(self) -> LedgerLake:
        """The :class:`LedgerLake` this source reads, its layout settled for ``start``.

        Raises :class:`NetworkMismatchError` when the lake's ``.config.json`` names another network.
        """
        lake = LedgerLake(
            self.uri,
            schema=self.lake_schema(),
            layout=self.layout,
            file_format=self.file_format,
            storage_options=self.fsspec_options(),
            retries=self.retries,
            network_passphrase=self.network_passphrase,
        )
        lake.resolve(self.start)
        return lake
