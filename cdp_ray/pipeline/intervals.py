"""Arithmetic on sets of ledgers held as sorted, disjoint, closed intervals ``[(first, last), ...]``.

Resume, dry runs and checkpoints reason about which ledgers are committed with these, so their cost
grows with the number of committed ranges, never with the number of ledgers.
"""

from __future__ import annotations

from typing import Iterable

Interval = tuple[int, int]


def merge(ranges: Iterable[Interval]) -> list[Interval]:
    """The union of ``ranges`` (any order, overlapping or adjacent) as sorted disjoint intervals."""
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Ledgers in both ``a`` and ``b`` (each sorted and disjoint)."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s <= e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(span: Interval, covered: list[Interval]) -> list[Interval]:
    """The parts of ``span`` not in ``covered`` (sorted and disjoint)."""
    out, cur = [], span[0]
    for s, e in covered:
        if e < cur:
            continue
        if s > span[1]:
            break
        if s > cur:
            out.append((cur, s - 1))
        cur = max(cur, e + 1)
    if cur <= span[1]:
        out.append((cur, span[1]))
    return out


def size(intervals: Iterable[Interval]) -> int:
    """Number of ledgers in ``intervals``."""
    return sum(e - s + 1 for s, e in intervals)
