"""SEP-54 object keys, computed from ledger sequences (never listed)."""

from __future__ import annotations

from typing import Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_UINT32 = 0xFFFFFFFF


class LakeSchema(BaseModel):
    """How a lake groups ledgers into objects (SEP-54 `.config.json`, galexie `[schema]`)."""

    model_config = ConfigDict(extra="forbid")

    ledgers_per_file: int = Field(1, ge=1, description="ledgers in each batch object (ledgersPerBatch)")
    files_per_partition: int = Field(
        64000, ge=1, description="batch objects in each partition directory (batchesPerPartition)"
    )
    file_extension: str = Field("zst", description="object suffix after `.xdr.`: `zst`, older lakes `zstd`")
    network_passphrase: str | None = Field(None, description="passphrase recorded in .config.json, if any")

    @classmethod
    def from_config_json(cls, doc: dict) -> "LakeSchema":
        """Build from a SEP-54 `.config.json` document."""
        compression = doc.get("compression", "zstd")
        if compression != "zstd":
            from cdp_ray.errors import LakeError

            raise LakeError(
                f".config.json declares compression {compression!r}; only zstd is defined by SEP-54",
                hint="point the source at a SEP-54 lake written by galexie",
            )
        try:
            return cls(
                ledgers_per_file=doc.get("ledgersPerBatch", 1),
                files_per_partition=doc.get("batchesPerPartition", 64000),
                network_passphrase=doc.get("networkPassphrase"),
            )
        except ValidationError as exc:
            from cdp_ray.errors import LakeError

            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise LakeError(
                f".config.json has an invalid schema ({problems})",
                hint="ledgersPerBatch and batchesPerPartition must be positive integers",
            ) from None

    def file_start(self, seq: int) -> int:
        """First ledger of the batch object holding ``seq``."""
        return (seq // self.ledgers_per_file) * self.ledgers_per_file

    def key_for(self, seq: int) -> str:
        """Object key (relative to the lake root) of the batch holding ledger ``seq``."""
        key = ""
        if self.files_per_partition > 1:
            size = self.ledgers_per_file * self.files_per_partition
            pstart = (seq // size) * size
            key = f"{MAX_UINT32 - pstart:08X}--{pstart}-{pstart + size - 1}/"
        start = self.file_start(seq)
        end = start + self.ledgers_per_file - 1
        key += f"{MAX_UINT32 - start:08X}--{start}"
        if end != start:
            key += f"-{end}"
        return f"{key}.xdr.{self.file_extension}"

    def files_for_range(self, start: int, end: int) -> Iterator[tuple[int, int, str]]:
        """Yield ``(file_start, file_end, key)`` for each object covering ``[start, end]``."""
        fs = self.file_start(start)
        while fs <= end:
            yield fs, fs + self.ledgers_per_file - 1, self.key_for(fs)
            fs += self.ledgers_per_file
