"""UTC times -> ledger sequences, by searching the lake's own close times.

A ledger's close time is in its header (``scpValue.closeTime``), readable from the first bytes of its
``LedgerCloseMeta`` without decoding the rest (:func:`cdp_ray.lake.formats.peek_header`). Close
times increase strictly with the sequence, so the ledger of a time is found by searching the lake:

1. Bounds. A ``files`` layout knows its first and last ledger from its index. A SEP-54 lake is
   bounded by listing its partition directories (one listing) and the ledger objects of the first
   and last partition (two listings); ``lo``/``hi`` given by the caller skip this.
2. Search. Each probe reads one ledger object (one GET) and peeks its close time. Probes interpolate
   between the bracketing close times (Stellar closes a ledger every ~5-6 s, so interpolation lands
   within a few ledgers) and fall back to bisection every other step, which bounds the cost at
   ``2 * log2(hi - lo)`` reads; on pubnet a search typically takes under ten reads.

``start_time`` resolves to the first ledger closed at or after it, ``end_time`` to the last ledger
closed at or before it, so ``[start_time, end_time]`` selects exactly the ledgers closed inside.
Times beyond the lake's ends clamp to its first or last ledger (``end_time`` in the future means "up
to the newest ledger"); a ``start_time`` after the last ledger or an ``end_time`` before the first
is an error that says which ledgers and times the lake holds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cdp_ray.errors import ConfigError, LedgerNotFoundError
from cdp_ray.lake import LedgerLake
from cdp_ray.lake.formats import peek_header

_LEDGER_NAME = re.compile(r"^[0-9A-F]{8}--(\d+)(?:-(\d+))?\.xdr\.[a-z]+$")
_PARTITION_NAME = re.compile(r"^[0-9A-F]{8}--(\d+)-(\d+)$")


def parse_utc(value: str | datetime) -> datetime:
    """An ISO 8601 time (``2025-06-01T00:00:00Z``, ``2025-06-01``) as an aware UTC datetime.

    A time without offset is taken as UTC.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ConfigError(
                f"cannot read {text!r} as a UTC time", hint="write ISO 8601, e.g. 2025-06-01T12:00:00Z"
            ) from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LedgerClock:
    """Close times of a lake's ledgers, read on demand and remembered; ``reads`` counts object reads."""

    lake: LedgerLake
    reads: int = 0
    _times: dict[int, int] = field(default_factory=dict)

    def close_time(self, seq: int) -> int:
        if seq not in self._times:
            raw = next(iter(self.lake.read_range(seq, seq, verify=False)))
            self._times[seq] = peek_header(raw.xdr, raw.key).close_time
            self.reads += 1
        return self._times[seq]

    def bounds(self) -> tuple[int, int]:
        """First and last ledger the lake holds (see the module docstring for the cost)."""
        found = self.lake.available_range()
        if found is not None:
            return found
        fs, root = self.lake.fs, self.lake.root
        parts = sorted(
            (int(m.group(1)), int(m.group(2)), path)
            for path in fs.ls(root, detail=False)
            if (m := _PARTITION_NAME.match(path.rstrip("/").rsplit("/", 1)[-1]))
        )
        if not parts:
            parts = [(0, 0, root)]  # files_per_partition = 1: ledger objects sit at the root

        def ledgers(path: str) -> list[tuple[int, int]]:
            out = []
            for p in fs.ls(path, detail=False):
                if m := _LEDGER_NAME.match(p.rsplit("/", 1)[-1]):
                    out.append((int(m.group(1)), int(m.group(2) or m.group(1))))
            return sorted(out)

        first, last = ledgers(parts[0][2]), ledgers(parts[-1][2])
        if not first or not last:
            raise ConfigError(
                f"cannot resolve times: no ledger objects found under {self.lake.uri!r}",
                hint="check the source URI, or give the range as start/end ledgers",
            )
        return max(first[0][0], 2), last[-1][1]


def _search(clock: LedgerClock, target: int, lo: int, hi: int, *, first_at_or_after: bool) -> int:
    """The first ledger with close time >= target (or the last with close time <= target) in [lo, hi]."""
    t_lo, t_hi = clock.close_time(lo), clock.close_time(hi)
    if first_at_or_after:
        if target <= t_lo:
            return lo
        # invariant: time(lo) < target <= time(hi)
    elif target >= t_hi:
        return hi
    # invariant (end): time(lo) <= target < time(hi)
    step = 0
    while hi - lo > 1:
        if step % 2 == 0 and t_hi > t_lo:
            guess = lo + int((target - t_lo) * (hi - lo) / (t_hi - t_lo))
            mid = min(max(guess, lo + 1), hi - 1)
        else:
            mid = (lo + hi) // 2
        step += 1
        t_mid = clock.close_time(mid)
        below = t_mid < target if first_at_or_after else t_mid <= target
        if below:
            lo, t_lo = mid, t_mid
        else:
            hi, t_hi = mid, t_mid
    return hi if first_at_or_after else lo


@dataclass(frozen=True)
class ResolvedRange:
    """Ledgers of a time range, with what it cost to find them."""

    start: int
    end: int
    reads: int


def resolve_time_range(
    lake: LedgerLake,
    start_time: str | datetime | None = None,
    end_time: str | datetime | None = None,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> ResolvedRange:
    """Ledger sequences of ``[start_time, end_time]`` in ``lake`` (either end may be omitted: the lake's bounds)."""
    clock = LedgerClock(lake)
    try:
        if lo is None or hi is None:
            b_lo, b_hi = clock.bounds()
            lo, hi = lo or b_lo, hi or b_hi
        t_lo, t_hi = clock.close_time(lo), clock.close_time(hi)
        span = f"the lake holds ledgers {lo}-{hi}, closed {_iso(t_lo)} to {_iso(t_hi)}"
        start, end = lo, hi
        if start_time is not None:
            ts = math.ceil(parse_utc(start_time).timestamp())  # close times are whole seconds
            if ts > t_hi:
                raise ConfigError(f"start_time {_iso(ts)} is after the lake's last ledger", hint=span)
            start = _search(clock, ts, lo, hi, first_at_or_after=True)
        if end_time is not None:
            te = math.floor(parse_utc(end_time).timestamp())
            if te < t_lo:
                raise ConfigError(f"end_time {_iso(te)} is before the lake's first ledger", hint=span)
            end = _search(clock, te, lo, hi, first_at_or_after=False)
    except LedgerNotFoundError as exc:
        raise ConfigError(
            f"cannot resolve times: {exc.message}",
            hint="the lake has a gap inside its bounds; give the range as start/end ledgers",
        ) from exc
    if end < start:
        raise ConfigError(
            f"no ledger closed between {start_time} and {end_time}",
            hint=f"ledger {end} closed at {_iso(clock.close_time(end))}, ledger {start} at {_iso(clock.close_time(start))}; widen the range",
        )
    return ResolvedRange(start, end, clock.reads)
