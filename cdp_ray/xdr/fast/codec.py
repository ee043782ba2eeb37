"""The compiled XDR codec: schema -> descriptor table -> :class:`_fastxdr.Codec`, plus the classes it builds.

Decoded values are instances of thin subclasses of the ``stellar_sdk.xdr`` classes (same name, same
attributes, equal to and hashing like the SDK's objects, ``isinstance`` of them) whose only additions
are codec-backed ``to_xdr_bytes``/``to_xdr``/``from_xdr_bytes``/``from_xdr``: re-encoding a decoded
value (hashes, base64 columns) is as fast as decoding it. Enum values are the SDK's own members.

Values of :data:`SOURCE_TYPES` also keep the bytes they were decoded from (``_xdr_src``), which
:func:`cdp_ray.xdr.fast.source_xdr` returns without encoding. ``to_xdr_bytes`` always encodes the
current attributes, so it follows changes made to a value; pickles and copies leave the source out.
"""

from __future__ import annotations

import base64
import enum
import logging
from typing import Any

import stellar_sdk
from stellar_sdk import xdr

from cdp_ray.xdr.fast import _fastxdr

log = logging.getLogger(__name__)
CLASSES_MODULE = "cdp_ray.xdr.fast.classes"
_PRIM_KINDS = {
    "i32": _fastxdr.I32,
    "u32": _fastxdr.U32,
    "i64": _fastxdr.I64,
    "u64": _fastxdr.U64,
    "bool": _fastxdr.BOOL,
    "f32": _fastxdr.F32,
    "f64": _fastxdr.F64,
}
_UNBOUNDED = 0xFFFFFFFF


def load_schema() -> dict[str, tuple]:
    """The schema for the installed stellar-sdk: the generated one, or one read from the SDK at run time."""
    from cdp_ray.xdr.fast.schema import SDK_VERSION, TYPES

    if SDK_VERSION == stellar_sdk.__version__:
        return TYPES
    from cdp_ray.xdr.fast.generate import build

    log.warning(
        "cdp_ray.xdr.fast: schema.py was generated for stellar-sdk %s, %s is installed; reading the SDK's "
        "types at start-up (run `python -m cdp_ray.xdr.fast.generate` to skip this)",
        SDK_VERSION,
        stellar_sdk.__version__,
    )
    return build()


def _to_xdr_bytes(self) -> bytes:
    return CODEC.encode(self._xdr_tid, self)


def _to_xdr(self) -> str:
    return base64.b64encode(CODEC.encode(self._xdr_tid, self)).decode()


def _lazy_to_xdr_bytes(self) -> bytes:
    raw = self.__dict__.get("_xdr_raw")
    return raw if raw is not None else CODEC.encode(self._xdr_tid, self)


def _lazy_to_xdr(self) -> str:
    return base64.b64encode(_lazy_to_xdr_bytes(self)).decode()


def _getstate(self) -> dict:
    """Pickled and copied state: the attributes, without the kept source (a copy may be changed)."""
    state = self.__dict__
    if "_xdr_src" in state:
        state = {k: v for k, v in state.items() if k != "_xdr_src"}
    return state


def _materialize(self) -> None:
    CODEC.materialize(self._xdr_tid, self)


def _lazy_getattr(self, name: str):
    if name.startswith("__") or "_xdr_raw" not in self.__dict__:
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
    _materialize(self)
    return object.__getattribute__(self, name)


def _lazy_setattr(self, name: str, value) -> None:
    _materialize(self)
    object.__setattr__(self, name, value)


def _lazy_delattr(self, name: str) -> None:
    _materialize(self)
    object.__delattr__(self, name)


class _LazyArm:
    """A union arm's default on a lazy class: a value still raw is decoded first (its selected arm then sits on
    the instance, which a non-data descriptor yields to); once decoded, an unselected arm reads None."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None or "_xdr_raw" not in obj.__dict__:
            return None
        _materialize(obj)
        return obj.__dict__.get(self.name)


def _from_xdr_bytes(cls, data: bytes):
    return CODEC.decode(cls._xdr_tid, data)


def _from_xdr(cls, data: str):
    return CODEC.decode(cls._xdr_tid, base64.b64decode(data.encode()))


class _Compiler:
    """Assigns type indices and builds the descriptor tuples that ``_fastxdr.Codec`` takes."""

    def __init__(self, types: dict[str, tuple], lazy: tuple[str, ...], source: tuple[str, ...] = ()):
        self.types = types
        self.lazy = set(lazy)
        self.source = set(source)
        self.names = sorted(types)
        self.tid = {name: i for i, name in enumerate(self.names)}
        self.descs: list[tuple | None] = [None] * len(self.names)
        self.anon: dict[tuple, int] = {}
        self.classes: dict[str, type] = {}

    def expr(self, e: tuple) -> int:
        kind = e[0]
        if kind == "ref":
            return self.tid[e[1]]
        if e in self.anon:
            return self.anon[e]
        if kind in _PRIM_KINDS:
            desc = (_PRIM_KINDS[kind], kind, None, 0, -1, (), (), (), None, None, False)
        elif kind in ("opaque", "vopaque", "string"):
            k = {"opaque": _fastxdr.OPAQUE, "vopaque": _fastxdr.VOPAQUE, "string": _fastxdr.STRING}[kind]
            desc = (k, f"{kind}<{e[1]}>", None, e[1], -1, (), (), (), None, None, False)
        elif kind == "array":
            elem = self.expr(e[1])
            bound = _UNBOUNDED if e[2] is None else e[2]
            desc = (_fastxdr.ARRAY, f"array<{bound}>", None, bound, elem, (), (), (), None, None, False)
        elif kind == "farray":
            desc = (_fastxdr.FARRAY, f"array[{e[2]}]", None, e[2], self.expr(e[1]), (), (), (), None, None, False)
        elif kind == "opt":
            desc = (_fastxdr.OPT, "optional", None, 0, self.expr(e[1]), (), (), (), None, None, False)
        else:
            raise ValueError(f"unknown type expression {e!r}")
        self.anon[e] = len(self.descs)
        self.descs.append(desc)
        return self.anon[e]

    def named(self, name: str) -> tuple:
        entry = self.types[name]
        base = getattr(xdr, name)
        tid = self.tid[name]
        if entry[0] == "enum":
            if not issubclass(base, enum.IntEnum):
                raise TypeError(f"stellar_sdk.xdr.{name} is not an IntEnum")
            members = {int(v): m for v, m in base._value2member_map_.items()}
            return (_fastxdr.ENUM, name, base, 0, -1, (), (), (), members, None, False)
        arms = [attr for attr, _ in entry[3]] if entry[0] == "union" else []
        # Unselected arms read None from the class instead of being stored on every instance.
        ns = {attr: None for attr in arms}
        keep = name in self.source
        if keep:
            ns["__getstate__"] = _getstate
        cls = type(
            name,
            (base,),
            {
                **ns,
                "__slots__": (),
                "__module__": CLASSES_MODULE,
                "__qualname__": name,
                "__doc__": base.__doc__,
                "_xdr_tid": tid,
                "to_xdr_bytes": _to_xdr_bytes,
                "to_xdr": _to_xdr,
                "from_xdr_bytes": classmethod(_from_xdr_bytes),
                "from_xdr": classmethod(_from_xdr),
            },
        )
        self.classes[name] = cls
        lazy = None
        if name in self.lazy:
            lazy = type(
                "Lazy" + name,
                (cls,),
                {
                    "__slots__": (),
                    "__module__": CLASSES_MODULE,
                    "__qualname__": "Lazy" + name,
                    "__doc__": f"A {name} kept as raw XDR until an attribute is read.",
                    "__getattr__": _lazy_getattr,
                    "__setattr__": _lazy_setattr,
                    "__delattr__": _lazy_delattr,
                    "to_xdr_bytes": _lazy_to_xdr_bytes,
                    "to_xdr": _lazy_to_xdr,
                    **{attr: _LazyArm(attr) for attr in arms},
                },
            )
            self.classes[lazy.__name__] = lazy
        if entry[0] == "typedef":
            _, attr, e = entry
            return (_fastxdr.TYPEDEF, name, cls, 0, -1, ((attr, self.expr(e)),), (), (), None, lazy, keep)
        if entry[0] == "struct":
            _, reads, params = entry
            wire = [r[0] for r in reads]
            fields = tuple((attr, self.expr(e)) for attr, e in reads)
            order = tuple(wire.index(p) for p in params)
            return (_fastxdr.STRUCT, name, cls, 0, -1, fields, order, (), None, lazy, keep)
        _, disc, disc_expr, arms, cases = entry
        fields = ((disc, self.expr(disc_expr)),) + tuple(
            (attr, -1 if e is None else self.expr(e)) for attr, e in arms
        )
        arm_index = {attr: i + 1 for i, (attr, _) in enumerate(arms)}
        return (
            _fastxdr.UNION,
            name,
            cls,
            1,
            -1,
            fields,
            (),
            tuple((value, -1 if attr is None else arm_index[attr]) for value, attr in cases),
            None,
            lazy,
            keep,
        )

    def compile(self) -> tuple[tuple, dict[str, int], dict[str, type]]:
        unknown = sorted(n for n in self.source if self.types.get(n, ("",))[0] not in ("struct", "union", "typedef"))
        if unknown:
            raise ValueError(f"only struct, union and typedef types can keep their source, not {unknown}")
        for name in self.names:
            self.descs[self.tid[name]] = self.named(name)
        return tuple(self.descs), self.tid, self.classes


#: Types decoded lazily below the top of a decode: kept as checked raw XDR until first read. Ledger
#: entry changes are over half of a current ledger's bytes and only some processors read them; the core
#: processors read contract events (a sixth of the bytes, a fifth of the values) and operations with their
#: results (nearly half of the values) from their raw XDR.
LAZY_TYPES = ("LedgerEntryChanges", "ContractEvent", "Operation", "OperationResult")
#: Types whose values keep their input bytes: what the transactions table writes as base64, the
#: bodies transaction hashes are computed over (sha256 of the signature payload), and the contract
#: events whose XDR, topics and data the contract_events table writes as base64.
SOURCE_TYPES = (
    "TransactionEnvelope",
    "TransactionResult",
    "TransactionMeta",
    "Transaction",
    "FeeBumpTransaction",
    "TransactionV0",
    "ContractEvent",
)


def _build() -> tuple[Any, dict[str, int], dict[str, type]]:
    descs, tids, classes = _Compiler(load_schema(), LAZY_TYPES, SOURCE_TYPES).compile()
    return _fastxdr.Codec(descs), tids, classes


CODEC, TIDS, CLASSES = _build()


def _tid(cls: type | str) -> int:
    return TIDS[cls if isinstance(cls, str) else cls.__name__]


def decode(cls: type | str, data: bytes, offset: int = 0, *, lazy: bool = True):
    """Decode one value of XDR type ``cls`` (an SDK class or its name) that fills ``data`` from ``offset``.

    With ``lazy`` the types of :data:`LAZY_TYPES` below the top are checked and kept as raw XDR until
    first read; ``lazy=False`` builds the whole object graph at once.
    """
    return CODEC.decode(_tid(cls), data, offset, True, lazy)


def decode_prefix(cls: type | str, data: bytes, offset: int = 0, *, lazy: bool = True) -> tuple[Any, int]:
    """Decode one value of XDR type ``cls`` at ``offset``; return it and the offset just past it."""
    return CODEC.decode(_tid(cls), data, offset, False, lazy)


def encode(value, cls: type | str | None = None) -> bytes:
    """XDR bytes of ``value``, an SDK or fast object (``cls`` names its type if it is neither)."""
    if cls is None:
        tid = getattr(value, "_xdr_tid", None)
        return CODEC.encode(tid if tid is not None else _tid(type(value)), value)
    return CODEC.encode(_tid(cls), value)


def raw_xdr(value) -> bytes | None:
    """XDR bytes of a value this engine decoded (its raw bytes while still lazy), None for any other object."""
    return value.to_xdr_bytes() if hasattr(type(value), "_xdr_tid") else None


def kept_xdr(value) -> bytes | None:
    """The XDR a value of this engine was decoded from (its kept source, or its raw bytes while lazy), else None."""
    state = value.__dict__
    src = state.get("_xdr_src")
    return src if src is not None else state.get("_xdr_raw")


#: ``balance_changes(raw)``: ``(entry_type, holder, asset, amount)`` balance contributions of a raw
#: ``LedgerEntryChanges``, scanned in C without building objects (see the method's docstring).
balance_changes = CODEC.balance_changes
#: ``created_sponsors(raw)``: sponsor keys of the created and restored entries of a raw ``LedgerEntryChanges``.
created_sponsors = CODEC.created_sponsors
#: ``ledger_index(raw, network_id)``: a ``LedgerCloseMeta`` checked like :func:`decode` checks it and located
#: without building it, as bytes laid out as ``fastxdr_api.h`` describes (see the method's docstring).
ledger_index = CODEC.ledger_index
#: ``event_summary(raw)``: what token movement readers look at in a raw ``ContractEvent`` (see the method's
#: docstring and :func:`cdp_ray.processors.scval.event_summary`), read in C without building it.
event_summary = CODEC.event_summary
