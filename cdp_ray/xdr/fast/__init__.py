"""The fast XDR engine: a compiled, table-driven decoder that builds stellar-sdk's own object graph.

``stellar_sdk.xdr`` decodes a current pubnet ledger (about 1 MB) in 0.3-0.6 s per core: one Python
call, one ``__init__`` and one ``xdrlib3`` read per value, and the cyclic GC run over and over on the
growing tree. The fast engine (``_fastxdr.c``) walks a table compiled from the SDK's own type
descriptions (``schema.py``, generated from the SDK by ``generate.py``) and builds instances of thin
subclasses of the SDK classes directly, with the SDK's checks. Ledger entry changes (over half of a
ledger's bytes), contract events, operations and operation results are checked and kept as raw XDR
until a processor reads them. ``balance_changes`` and ``created_sponsors`` scan such raw changes in C
for what token transfer verification and operation sponsors need, ``event_summary`` reads what token
movements need of an event, and ``cdp_ray/processors/_details.c`` what the operations table needs of
an operation, without decoding them. Re-encoding runs in C too, and returns the raw bytes of values not decoded
yet. Envelopes, results, metas, transaction bodies and contract events keep the bytes they were decoded
from: :func:`source_xdr` returns them for the base64 columns and transaction hashes, no encoding
(:func:`kept_xdr` returns them, or a lazy value's raw bytes, and None for other values).

Engines: ``"native"``, ``"fast"`` (both this codec) and ``"sdk"`` (``stellar_sdk.xdr``). ``native``
checks a ledger and locates its parts in C without building values (``ledger_index``): the ledger is
decoded on first read, and the processors' native table builders read its XDR instead
(``cdp_ray/processors/_native``). ``fast`` decodes every ledger at once, for the Python processors.
The default is ``"native"`` when the extension is built, else ``"sdk"``; ``$CDP_RAY_XDR_ENGINE``
overrides it. ``tests/test_fast_decode.py`` proves the engines produce equal objects, equal XDR and
equal tables for every real ledger.
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Literal

from cdp_ray.errors import ConfigError

Engine = Literal["native", "fast", "sdk"]
ENGINES: tuple[str, ...] = ("native", "fast", "sdk")
ENV_VAR = "CDP_RAY_XDR_ENGINE"

try:
    from cdp_ray.xdr.fast._fastxdr import INDEX_SIZES
    from cdp_ray.xdr.fast.codec import (
        LAZY_TYPES,
        SOURCE_TYPES,
        balance_changes,
        created_sponsors,
        decode,
        decode_prefix,
        encode,
        event_summary,
        kept_xdr,
        ledger_index,
        raw_xdr,
    )
except ImportError as exc:  # the C extension was not built (no compiler at install time)
    _HERE = Path(__file__).parent
    if not any((_HERE / f"_fastxdr{suffix}").is_file() for suffix in EXTENSION_SUFFIXES):
        # the ImportError itself would blame a "circular import" (codec.py imports the missing module)
        _UNAVAILABLE: str | None = (
            f"the compiled extension _fastxdr is not in {_HERE} (a source tree without build outputs, such as a "
            "Ray job's uploaded working_dir, or an install without a C compiler)")
    else:
        _UNAVAILABLE = f"{type(exc).__name__}: {exc}"

    def raw_xdr(value) -> None:
        """None: without the extension no value is a fast-engine value, so callers take their Python path."""
        return None

    def kept_xdr(value) -> None:
        """None: without the extension no value keeps its XDR."""
        return None

else:
    _UNAVAILABLE = None


def available() -> bool:
    """Whether the compiled codec is importable."""
    return _UNAVAILABLE is None


def unavailable_reason() -> str | None:
    """Why the fast engine cannot be used, or None when it can."""
    return _UNAVAILABLE


def source_xdr(value) -> bytes:
    """The XDR bytes ``value`` was decoded from, when the fast engine kept them, else ``value.to_xdr_bytes()``.

    The fast engine keeps the input bytes of values of ``SOURCE_TYPES``: "as decoded", so they do not
    follow later changes to the value (``to_xdr_bytes()`` does). For code that reads values only.
    Any other value (stellar-sdk's, or built by hand) is encoded.
    """
    src = kept_xdr(value)
    return src if src is not None else value.to_xdr_bytes()


def fallback_warning(engine: str | None = None) -> str | None:
    """Why decoding falls back to stellar-sdk although nobody asked for it (several times slower), or None."""
    if engine or os.environ.get(ENV_VAR) or available():
        return None
    return (f"decoding with stellar-sdk, several times slower than the compiled decoder: {_UNAVAILABLE}; "
            "install cdp-ray where it runs (`pip install .` with a C compiler); for Ray jobs submit with "
            "`--runtime-env jobs/runtime_env.yaml`, which keeps the checkout's cdp_ray/ out of the upload")


def resolve_engine(engine: str | None = None) -> Engine:
    """The engine to use: ``engine`` if given, else ``$CDP_RAY_XDR_ENGINE``, else native when built."""
    chosen = engine or os.environ.get(ENV_VAR) or ("native" if available() else "sdk")
    if chosen not in ENGINES:
        raise ConfigError(
            f"unknown XDR engine {chosen!r}" + (f" (from ${ENV_VAR})" if not engine else ""),
            hint=f"use one of {', '.join(ENGINES)}",
        )
    if chosen != "sdk" and not available():
        raise ConfigError(
            f"the {chosen} XDR engine is not built ({_UNAVAILABLE})",
            hint='reinstall with a C compiler and Python headers (`pip install -e .`), or use engine="sdk"',
        )
    return chosen  # type: ignore[return-value]


__all__ = [
    "ENGINES",
    "ENV_VAR",
    "Engine",
    "available",
    "fallback_warning",
    "kept_xdr",
    "raw_xdr",
    "resolve_engine",
    "source_xdr",
    "unavailable_reason",
]
if _UNAVAILABLE is None:
    __all__ += [
        "LAZY_TYPES",
        "SOURCE_TYPES",
        "balance_changes",
        "created_sponsors",
        "decode",
        "decode_prefix",
        "encode",
        "event_summary",
        "INDEX_SIZES",
        "ledger_index",
    ]
