"""Reading ledgers from a lake on local disk, S3 or GCS.

Two layouts:

* ``lake`` (SEP-54): object keys are computed from the ledger range and the lake schema
  (``.config.json`` when present); nothing is listed, so ranges in lakes of millions of objects
  start at once. Opening a lake reads ``.config.json`` and probes the object of the first ledger
  (to tell ``.xdr.zst`` from the older ``.xdr.zstd`` suffix); reading then costs one GET per object.
* ``files``: a directory (or one file) of ledger files of any shape in :mod:`cdp_ray.lake.formats`;
  the directory is listed once and each file's ledgers are indexed by their header sequence. Meant
  for test fixtures and small exports, not for lakes.

Transient storage errors (timeouts, connection resets, 5xx, throttling) are retried with exponential
backoff; a missing object is a :class:`LedgerNotFoundError` naming the exact key.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, TypeVar
from urllib.parse import urlparse

import fsspec

from cdp_ray.errors import (
    CdpRayError,
    CorruptLedgerFileError,
    LakeError,
    LakeRootNotFoundError,
    LedgerGapError,
    LedgerIntegrityError,
    LedgerNotFoundError,
    NetworkMismatchError,
)
from cdp_ray.lake.formats import FileFormat, peek_header, split_ledgers
from cdp_ray.lake.schema import LakeSchema

Layout = Literal["auto", "lake", "files"]
T = TypeVar("T")
_TRANSIENT_NAMES = ("Timeout", "Connection", "Disconnected", "Throttl", "SlowDown", "ServiceUnavailable")


@dataclass(frozen=True)
class RawLedger:
    """One ledger's ``LedgerCloseMeta`` XDR, the object it came from (full path or URI), and its header's
    hash and previous ledger hash (for chaining ranges read apart)."""

    sequence: int
    xdr: bytes
    key: str
    hash: bytes = b""
    previous_hash: bytes = b""


class LakeNetworkMismatchError(NetworkMismatchError):
    """The lake's ``.config.json`` records a network other than the configured one."""

    def __init__(self, uri: str, configured: str, recorded: str):
        CdpRayError.__init__(
            self,
            f"lake {uri!r} holds ledgers of network {recorded!r} (its .config.json networkPassphrase), "
            f"but the source is configured for {configured!r}",
            hint="set the source's `network:` to the lake's network, or point the source at the lake "
            "of the network you meant",
        )
        self.sequence, self.passphrase, self.detected = None, configured, recorded


class LedgerNotInFilesError(LedgerNotFoundError):
    """A ``files``-layout directory has no file holding a requested ledger."""

    def __init__(self, sequence: int, root: str, held: tuple[int, int] | None):
        span = f"its files hold ledgers {held[0]}-{held[1]} (with gaps if any)" if held else "it holds no ledger file"
        CdpRayError.__init__(
            self,
            f"ledger {sequence} is in no file under {root!r}: {span}",
            hint="shorten the range to ledgers the directory holds, or add the missing ledger files",
        )
        self.sequence, self.key = sequence, root


def split_uri(uri: str) -> tuple[str, str]:
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


def open_filesystem(protocol: str, storage_options: dict[str, Any] | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for ``protocol`` (``file``, ``s3``, ``gcs``).

    A GCS filesystem with an ``endpoint_url`` (an emulator, a proxy) is gcsfs's plain JSON-API
    client: gcsfs's default class probes each bucket's layout over gRPC, which emulators do not
    serve (every operation would wait a minute for that probe to time out).
    """
    opts = dict(storage_options or {})
    if protocol == "gcs" and opts.get("endpoint_url"):
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(**opts)
    return fsspec.filesystem(protocol, **opts)


def url_to_filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path)`` of any fsspec URL, opened as :func:`open_filesystem` opens GCS endpoints."""
    opts = dict(storage_options or {})
    if uri.startswith(("gs://", "gcs://")) and opts.get("endpoint_url"):
        return open_filesystem("gcs", opts), split_uri(uri)[1]
    return fsspec.core.url_to_fs(uri, **opts)


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error is worth retrying (timeouts, resets, 5xx, throttling), not a 4xx."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in (errno.EINVAL, errno.ENAMETOOLONG)  # s3fs maps 400s (bad bucket name...) to EINVAL
    code = getattr(exc, "code", None)
    if isinstance(code, int):  # gcsfs HttpError, google.api_core errors
        return code >= 500 or code in (408, 429)
    status = getattr(exc, "response", None)
    if isinstance(status, dict):  # botocore ClientError
        http = status.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(http, int):
            return http >= 500 or http in (408, 429)
    return any(word in type(exc).__name__ for word in _TRANSIENT_NAMES)  # aiohttp, botocore network errors


class LedgerLake:
    """A source of ledgers addressed by sequence.

    Instances are cheap to pickle: Ray read tasks carry one each and open the filesystem lazily.
    ``network_passphrase``, when given, must agree with the passphrase in the lake's ``.config.json``.
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
        network_passphrase: str | None = None,
    ):
        self.uri = uri
        self.protocol, root = split_uri(uri)
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.storage_options = dict(storage_options or {})
        self.file_format = file_format
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self._fs: fsspec.AbstractFileSystem | None = None
        self._index: dict[int, str] | None = None
        self._resolved = False
        self.config_found = False
        self.schema, self.layout = self._resolve_layout(schema, layout)
        recorded = self.schema.network_passphrase
        if network_passphrase and recorded and recorded != network_passphrase:
            raise LakeNetworkMismatchError(uri, network_passphrase, recorded)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fs"] = None
        return state

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._fs = open_filesystem(self.protocol, self.storage_options)
        return self._fs

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def display(self, key: str = "") -> str:
        """A key relative to the root as the user would type it: ``s3://bucket/prefix/key`` or a local path."""
        return self._url(self._path(key))

    def _url(self, path: str) -> str:
        return path if self.protocol == "file" else f"{'gs' if self.protocol == 'gcs' else self.protocol}://{path}"

    def _where(self, key: str) -> str:
        """What :meth:`keys_for_range` returned, as the user would name it."""
        return self.display(key) if self.layout == "lake" else self._url(key)

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried ``retries`` times with exponential backoff on transient errors."""
        delay = self.retry_backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == self.retries:
                    raise LakeError(
                        f"{what} failed after {attempt + 1} attempts: {type(exc).__name__}: {exc}",
                        hint="the storage service kept failing; check network access and the service's "
                        "status, or raise the source's `retries`",
                    ) from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _denied(self, path: str, exc: Exception) -> LakeError:
        return LakeError(
            f"access denied to {path!r}: {exc}",
            hint="for a public bucket set `anonymous: true`; otherwise provide credentials "
            "(environment, profile or storage_options)",
        )

    def _resolve_layout(self, schema: LakeSchema | None, layout: Layout) -> tuple[LakeSchema, Layout]:
        if layout == "files":
            return schema or LakeSchema(), "files"
        cfg = self._read_config()
        if cfg is not None:
            self.config_found = True
            found = LakeSchema.from_config_json(cfg)
            if schema is not None:
                found = found.model_copy(update={"file_extension": schema.file_extension})
            return found, "lake"
        if layout == "lake":
            return schema or LakeSchema(), "lake"
        return schema or LakeSchema(), "auto"

    def _read_config(self) -> dict | None:
        path = self._path(".config.json")
        try:
            raw = self._with_retries(f"read {self.display('.config.json')}", lambda: self.fs.cat_file(path, **self._single_get()))
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return doc
        except ValueError as exc:
            raise LakeError(
                f"{self.display('.config.json')} is not valid JSON: {exc}",
                hint="fix or remove the lake's .config.json",
            ) from exc

    def _single_get(self) -> dict[str, Any]:
        """``cat_file`` options for one plain GET: s3fs otherwise sends a HEAD first, then ranged GETs."""
        return {"max_concurrency": 1} if self.protocol == "s3" else {}

    def _probe(self, key: str) -> bool:
        """Whether object ``key`` exists, by reading its first byte (never a listing)."""
        path = self._path(key)
        try:
            self._with_retries(f"read {path}", lambda: self.fs.cat_file(path, start=0, end=1))
            return True
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        except PermissionError as exc:
            raise self._denied(self.display(key), exc) from exc

    def resolve(self, start: int) -> None:
        """Settle the layout and the object suffix from the object holding ``start``.

        ``auto`` becomes ``lake`` when ``.config.json`` or a SEP-54 object for ``start`` exists, else
        ``files``. A lake's suffix is ``.xdr.zst``, or the older ``.xdr.zstd`` when that object exists.
        """
        if self._resolved or self.layout == "files":
            self._resolved = True
            return
        for ext in dict.fromkeys((self.schema.file_extension, "zst", "zstd")):
            candidate = self.schema.model_copy(update={"file_extension": ext})
            if self._probe(candidate.key_for(start)):
                self.schema, self.layout, self._resolved = candidate, "lake", True
                return
        if self.layout == "auto":
            self._require_root()
            self.layout = "files"
        elif self.protocol == "file":
            self._require_root()  # a stat, not a listing; remote roots are checked by the first read
        self._resolved = True

    def _require_root(self) -> None:
        try:
            exists = self._with_retries(f"stat {self.display()}", lambda: self.fs.exists(self.root))
        except PermissionError as exc:
            raise self._denied(self.display(), exc) from exc
        if not exists:
            raise LakeRootNotFoundError(f"lake root {self.display()!r} does not exist")

    def _build_index(self) -> dict[int, str]:
        if self._index is not None:
            return self._index
        self._require_root()
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
        if not index:
            raise LakeError(
                f"{self.display()!r} is neither a SEP-54 lake (no .config.json, no ledger object at the "
                f"computed key) nor a directory of ledger files ({len(paths)} files, none readable as ledgers)",
                hint="check the source URI; for a lake without .config.json set ledgers_per_file and "
                "files_per_partition",
            )
        self._index = index
        return index

    def available_range(self) -> tuple[int, int] | None:
        """First and last ledger of a ``files`` layout (``None`` for a lake, which is never listed)."""
        if self.layout != "files":
            return None
        idx = self._build_index()
        return min(idx), max(idx)

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
                raise LedgerNotInFilesError(seq, self.display(), (min(idx), max(idx)))
            if not keys or keys[-1] != path:
                keys.append(path)
        return keys

    def fetch(self, key: str) -> bytes:
        """Bytes of one object, with retries on transient errors (``FileNotFoundError`` when absent)."""
        path = self._path(key) if self.layout == "lake" else key
        kwargs = self._single_get() if self.schema.ledgers_per_file <= 8 else {}
        try:
            return self._with_retries(f"read {self._where(key)}", lambda: self.fs.cat_file(path, **kwargs))
        except PermissionError as exc:
            raise self._denied(self._where(key), exc) from exc

    def object_size(self, seq: int) -> int | None:
        """Bytes of the lake object holding ledger ``seq`` (one HEAD), or ``None`` when it does not exist."""
        path = self._path(self.schema.key_for(seq))
        try:
            return int(self._with_retries(f"stat {self.display(self.schema.key_for(seq))}", lambda: self.fs.size(path)))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except PermissionError as exc:
            raise self._denied(self.display(self.schema.key_for(seq)), exc) from exc

    def _missing(self, seq: int, end: int, where: str) -> LedgerNotFoundError:
        """The error for ledger ``seq``'s missing object: a gap when the next object (also past ``end``)
        or the range's last one exists (at most two HEADs, on this error path only), else the lake's end."""
        if self.layout == "lake":
            after = self.schema.file_start(seq) + self.schema.ledgers_per_file
            for later in dict.fromkeys(x for x in (after, end) if x >= after):
                if self.object_size(later) is not None:
                    return LedgerGapError(seq, where, later)
        return LedgerNotFoundError(seq, where)

    def read_range(
        self, start: int, end: int, *, verify: bool = True, previous_hash: bytes | None = None
    ) -> Iterator[RawLedger]:
        """Yield every ledger of ``[start, end]`` in order, exactly once.

        Raises :class:`LedgerNotFoundError` for a missing object or ledger, :class:`CorruptLedgerFileError`
        for undecodable content or a batch lacking a ledger its key covers, and :class:`LedgerIntegrityError`
        when a header hash or the hash chain between consecutive ledgers does not verify (from
        ``previous_hash``, the hash of ledger ``start - 1``, when given), or a lake object holds a ledger
        its key does not cover.
        """
        self.resolve(start)
        expected = start
        prev_hash: bytes | None = previous_hash
        for key in self.keys_for_range(start, end):
            where = self._where(key)
            try:
                data = self.fetch(key)
            except FileNotFoundError:
                raise self._missing(expected, end, where) from None
            lo, hi = (self.schema.file_start(expected), self.schema.file_start(expected) + self.schema.ledgers_per_file - 1)
            held: dict[int, tuple[bytes, Any]] = {}
            seqs: list[int] = []
            for raw in split_ledgers(data, where, self.file_format):
                peek = peek_header(raw, where)
                seqs.append(peek.sequence)
                if self.layout == "lake" and not lo <= peek.sequence <= hi:
                    raise LedgerIntegrityError(
                        f"{where!r} holds ledger {peek.sequence}, but its key covers ledgers {lo}-{hi}",
                        sequence=peek.sequence,
                        key=where,
                    )
                if verify and not peek.header_hash_ok:
                    raise LedgerIntegrityError(
                        f"ledger {peek.sequence} in {where!r}: the header hash {peek.hash.hex()} is not the "
                        "sha256 of the header",
                        sequence=peek.sequence,
                        key=where,
                    )
                if start <= peek.sequence <= end:
                    held.setdefault(peek.sequence, (raw, peek))
            while expected <= end and expected in held:
                raw, peek = held.pop(expected)
                if verify and prev_hash is not None and peek.previous_ledger_hash != prev_hash:
                    raise LedgerIntegrityError(
                        f"ledger {expected} in {where!r}: previous_ledger_hash "
                        f"{peek.previous_ledger_hash.hex()} is not the hash of ledger {expected - 1} "
                        f"({prev_hash.hex()}): the range mixes ledgers of different chains",
                        sequence=expected,
                        key=where,
                    )
                prev_hash = peek.hash
                yield RawLedger(expected, raw, where, peek.hash, peek.previous_ledger_hash)
                expected += 1
            if self.layout == "lake" and expected <= min(end, hi):
                span = f"ledgers {min(seqs)}-{max(seqs)}" if seqs else "no ledger"
                raise CorruptLedgerFileError(
                    where, f"holds {span}, not ledger {expected}, which its key covers ({lo}-{hi})", sequence=expected
                )
        if expected <= end:
            raise LedgerNotFoundError(expected, self.display())
