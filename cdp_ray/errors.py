"""Typed errors. Each names the bad input and says what to do about it."""

from __future__ import annotations


class CdpRayError(Exception):
    """Base of every error cdp-ray raises on purpose.

    ``hint`` tells the user what to do; ``str(err)`` includes it.
    """

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None):
        if hint is not None:
            self.hint = hint
        self.message = message
        super().__init__(f"{message}\n  hint: {self.hint}" if self.hint else message)


class ConfigError(CdpRayError):
    """A pipeline, source, processor or sink configuration is invalid."""

    hint = "fix the configuration; `cdp-ray validate FILE` shows every problem with its location"


class UnknownComponentError(ConfigError):
    """A processor, source or sink name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        import difflib

        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        suggestion = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
        super().__init__(
            f"unknown {kind} {name!r}",
            hint=f"{suggestion}known {kind}s: {', '.join(sorted(known))}",
        )
        self.kind, self.name, self.known = kind, name, known


class LakeError(CdpRayError):
    """Reading the ledger lake failed."""

    hint = "check the lake URI, credentials and network access"


class LakeRootNotFoundError(LakeError, ConfigError):
    """The source names no lake: its root does not exist. Bad input (exit 2), not a failed read."""

    hint = "check the source URI (path, bucket and prefix)"


class LedgerNotFoundError(LakeError):
    """A ledger of the requested range is missing from the lake."""

    def __init__(self, sequence: int, key: str):
        super().__init__(
            f"ledger {sequence} is missing: expected object {key!r} does not exist",
            hint="the lake may not have been exported that far yet; shorten the range "
            "or check the lake's ledgers_per_file/files_per_partition schema (.config.json)",
        )
        self.sequence, self.key = sequence, key


class LedgerGapError(LedgerNotFoundError):
    """A ledger's object is missing from the lake although a later ledger's object exists: a gap."""

    def __init__(self, sequence: int, key: str, later: int):
        CdpRayError.__init__(
            self,
            f"ledger {sequence} is missing: expected object {key!r} does not exist, although the lake holds "
            f"ledger {later} after it (a gap in the lake)",
            hint="re-export the missing object (e.g. galexie `scan-and-fill` over the range), or run with "
            "on_error=quarantine to record the range in the dead-letter table and continue",
        )
        self.sequence, self.key, self.later = sequence, key, later


class CorruptLedgerFileError(LakeError):
    """A lake object cannot be decompressed or decoded as XDR."""

    def __init__(self, key: str, reason: str, *, sequence: int | None = None):
        where = f" (ledger {sequence})" if sequence is not None else ""
        super().__init__(
            f"corrupt ledger file {key!r}{where}: {reason}",
            hint="re-export this file from the source, or run with on_error=quarantine "
            "to record it in the dead-letter table and continue",
        )
        self.key, self.reason, self.sequence = key, reason, sequence


class LedgerIntegrityError(CdpRayError):
    """A decoded ledger fails a verification: wrong sequence, broken hash chain or header hash."""

    hint = "the file does not hold the ledger its name claims, or it was altered; re-export it"

    def __init__(self, message: str, *, sequence: int | None = None, key: str | None = None):
        super().__init__(message)
        self.sequence, self.key = sequence, key


class NetworkMismatchError(CdpRayError):
    """Transaction hashes do not match the configured network passphrase."""

    def __init__(self, sequence: int, passphrase: str, detected: str | None):
        found = f"; the ledger matches {detected!r}" if detected else ""
        super().__init__(
            f"ledger {sequence}: transaction hashes do not match network passphrase {passphrase!r}{found}",
            hint="set `network:` (pubnet, testnet, futurenet) or `network_passphrase:` to the "
            "network these ledgers come from",
        )
        self.sequence, self.passphrase, self.detected = sequence, passphrase, detected


class SinkError(CdpRayError):
    """Writing to a sink failed."""

    hint = "check the sink's URI, credentials and free space"


class ProcessingError(CdpRayError):
    """An unexpected exception while processing a ledger range (a cdp-ray bug, or a ledger shape it does
    not handle), carried back from a worker with the range and the original traceback."""

    hint = "report it with the ledger range and `traceback`; rerun with --verbose to print the traceback"

    def __init__(self, start: int, end: int, exc: BaseException):
        import traceback

        super().__init__(f"ledgers {start}-{end}: unexpected {type(exc).__name__}: {exc}")
        self.start, self.end, self.error_type = start, end, type(exc).__name__
        self.traceback = "".join(traceback.format_exception(exc))


class PipelineBusyError(CdpRayError):
    """Another run of the same pipeline holds its lock in a sink."""

    hint = ("wait for the other run to finish or stop it; the lock of a killed run is released when its "
            "database connection closes (PostgreSQL) or its lease expires (Parquet)")


class OwnershipError(ConfigError):
    """A sink's table is owned by another pipeline: two pipelines would replace each other's rows."""

