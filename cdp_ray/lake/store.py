"""Reading ledgers from a lake on local disk, S3 or GCS.

Two layouts:

* ``lake`` (SEP-54): object keys are computed from the ledger range and the lake schema
  (``.config.json`` when present); nothing is listed, so ranges in lakes of millions of objects
  start at once.
* ``files``: a directory (or one file) of ledger files of any shape in :mod:`cdp_ray.lake.formats`;
  the directory is listed once and each file's ledgers are indexed by their header sequence. Meant
  for test fixtures and small exports, not for lakes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator, Literal
from urllib.parse import urlparse

import fsspec

from cdp_ray.errors import CorruptLedgerFileError, LakeError, LedgerIntegrityError, LedgerNotFoundError
from cdp_ray.lake.formats import FileFormat, peek_header, split_ledgers
from cdp_ray.lake.schema import LakeSchema

Layout = Literal["auto", "lake", "files"]


@dataclass(frozen=True)
class RawLedger:
    """One ledger's ``LedgerCloseMeta`` XDR and where it came from."""

    sequence: int
    xdr: bytes
    key: str


def _split_uri(uri: str) -> tuple[str, str]:
    """``s3://b/p`` -> (``s3``, ``b/p``); plain paths and ``file://`` -> (``file``, path)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file", "lake"):
        return "file", (parsed.netloc + parsed.path) if parsed.scheme else uri
    if parsed.scheme in ("s3", "s3a"):
        return "s3", parsed.netloc + parsed.path
    if parsed.scheme in ("gs", "gcs"):
        return "gcs", parsed.netloc + parsed.path
    raise LakeError(
        f"unsupported lake URI scheme {parsed.scheme!r} in {uri!r}",
        hint="use a local path, file://, s3:// or gs://",
    )


class LedgerLake:
    """A source of ledgers addressed by sequence.

    Instances are cheap to pickle: Ray read tasks carry one each and open the filesystem lazily.
    """

    def __init__(
        self,
        uri: str,
        *,
        schema: LakeSchema | None = None,
        layout: Layout = "auto",
        file_format: FileFormat = "auto",
        storage_options: dict[str, Any] | None = None,
        retries: int = 3,
        retry_backoff_s: float = 0.5,
    ):
        self.uri = uri
        self.protocol, root = _split_uri(uri)
        self.root = root.rstrip("/") if self.protocol != "file" or root != "/" else root
        self.storage_options = dict(storage_options or {})
        self.file_format = file_format
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self._fs = None
        self.schema, self.layout = self._resolve_layout(schema, layout)
        self._index: dict[int, str] | None = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fs"] = None
        return state

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs = fsspec.filesystem(self.protocol, **self.storage_options)
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def _with_retries(self, what: str, fn):
        delay = self.retry_backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (FileNotFoundError, PermissionError):
                raise
            except OSError as exc:  # transient storage errors (timeouts, 5xx mapped to OSError)
                if attempt == self.retries:
                    raise LakeError(f"{what} failed after {self.retries + 1} attempts: {exc}") from exc
                time.sleep(delay)
                delay *= 2

    def _resolve_layout(self, schema: LakeSchema | None, layout: Layout) -> tuple[LakeSchema, Layout]:
        if layout == "files":
            return schema or LakeSchema(), "files"
        cfg = self._read_config()
        if cfg is not None:
            found = LakeSchema.from_config_json(cfg)
            if schema is not None:
                found = found.model_copy(update={"file_extension": schema.file_extension})
            return self._fix_extension(found), "lake"
        if layout == "lake":
            return schema or LakeSchema(), "lake"
        if self.protocol == "file" and self.fs.isfile(self.root):
            return schema or LakeSchema(), "files"
        return (schema or LakeSchema()), "auto"

    def _read_config(self) -> dict | None:
        try:
            raw = self._with_retries(".config.json read", lambda: self.fs.cat_file(self._path(".config.json")))
        except (FileNotFoundError, PermissionError):
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise LakeError(
                f"{self._path('.config.json')} is not valid JSON: {exc}",
                hint="fix or remove the lake's .config.json",
            ) from exc

    def _fix_extension(self, schema: LakeSchema) -> LakeSchema:
        return schema

    def _exists(self, key: str) -> bool:
        return bool(self._with_retries(f"stat {key}", lambda: self.fs.exists(self._path(key))))

    def resolve(self, start: int) -> None:
        """Settle an ``auto`` layout: a SEP-54 key for ``start`` exists -> ``lake``, else ``files``.

        Also picks the ``.xdr.zst`` or older ``.xdr.zstd`` suffix from the object that exists.
        """
        if self.layout == "files":
            return
        if self.layout == "lake" and self._exists(self.schema.key_for(start)):
            return
        for ext in ("zst", "zstd"):
            candidate = self.schema.model_copy(update={"file_extension": ext})
            if self._exists(candidate.key_for(start)):
                self.schema, self.layout = candidate, "lake"
                return
        if self.layout == "auto":
            self.layout = "files"

    def _build_index(self) -> dict[int, str]:
        if self._index is not None:
            return self._index
        if self.fs.isfile(self.root):
            paths = [self.root]
        else:
            paths = sorted(p for p in self.fs.find(self.root) if not p.rsplit("/", 1)[-1].startswith("."))
        index: dict[int, str] = {}
        for path in paths:
            try:
                ledgers = split_ledgers(self.fs.cat_file(path), path, self.file_format)
            except CorruptLedgerFileError:
                continue  # not a ledger file (READMEs, event dumps): a files-layout directory may hold them
            for raw in ledgers:
                try:
                    index.setdefault(peek_header(raw, path).sequence, path)
                except CorruptLedgerFileError:
                    break
        self._index = index
        return index

    def available_range(self) -> tuple[int, int] | None:
        """First and last ledger of a ``files`` layout (``None`` for a lake, which is never listed)."""
        if self.layout != "files":
            return None
        idx = self._build_index()
        return (min(idx), max(idx)) if idx else None

    def keys_for_range(self, start: int, end: int) -> list[str]:
        """Object keys (or file paths) holding ``[start, end]``, in ledger order."""
        self.resolve(start)
        if self.layout == "lake":
            return [k for _, _, k in self.schema.files_for_range(start, end)]
        idx = self._build_index()
        keys: list[str] = []
        for seq in range(start, end + 1):
            path = idx.get(seq)
            if path is None:
                raise LedgerNotFoundError(seq, f"{self.root} (no file holds this ledger)")
            if not keys or keys[-1] != path:
                keys.append(path)
        return keys

    def fetch(self, key: str) -> bytes:
        """Bytes of one object, with retries on transient errors."""
        path = self._path(key) if self.layout == "lake" else key
        return self._with_retries(f"read {path}", lambda: self.fs.cat_file(path))

    def read_range(self, start: int, end: int, *, verify: bool = True) -> Iterator[RawLedger]:
        """Yield every ledger of ``[start, end]`` in order, exactly once.

        Raises :class:`LedgerNotFoundError` for a missing object or ledger, :class:`CorruptLedgerFileError`
        for undecodable content and :class:`LedgerIntegrityError` when a header hash or the hash chain
        between consecutive ledgers does not verify.
        """
        expected = start
        prev_hash: bytes | None = None
        for key in self.keys_for_range(start, end):
            try:
                data = self.fetch(key)
            except FileNotFoundError:
                raise LedgerNotFoundError(expected, self._path(key)) from None
            seen: dict[int, bytes] = {}
            for raw in split_ledgers(data, key, self.file_format):
                peek = peek_header(raw, key)
                if verify and not peek.header_hash_ok:
                    raise LedgerIntegrityError(
                        f"ledger {peek.sequence} in {key!r}: header hash does not match sha256 of the header",
                        sequence=peek.sequence,
                        key=key,
                    )
                if start <= peek.sequence <= end:
                    seen.setdefault(peek.sequence, raw)
            while expected <= end and expected in seen:
                raw = seen.pop(expected)
                peek = peek_header(raw, key)
                if verify and prev_hash is not None and peek.previous_ledger_hash != prev_hash:
                    raise LedgerIntegrityError(
                        f"ledger {expected} in {key!r}: previous_ledger_hash does not match the hash of "
                        f"ledger {expected - 1}: the range mixes ledgers of different chains",
                        sequence=expected,
                        key=key,
                    )
                prev_hash = peek.hash
                yield RawLedger(expected, raw, key)
                expected += 1
            if self.layout == "lake" and expected <= end:
                _, file_end, _ = next(self.schema.files_for_range(expected, expected))
                if file_end >= expected and self.schema.key_for(expected) == key:
                    raise LedgerNotFoundError(expected, self._path(key))
        if expected <= end:
            raise LedgerNotFoundError(expected, self.root)
