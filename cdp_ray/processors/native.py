"""Native table builders: the core tables read from a ledger's raw XDR in C, straight into Arrow buffers.

Ledgers of the native engine (:class:`cdp_ray.xdr.ledger.LazyLedger`) carry their ``LedgerCloseMeta``
XDR and its ledger index; ``_native`` (``cdp_ray/processors/_native``, a C extension built by
``pip install``) reads what a table needs from them and fills the table's columns as Arrow lays them
out, so no value becomes a Python object and the ledger is never decoded. The Python processors are
the reference: a ledger that is not indexed (another engine, a filtered view), or one whose XDR holds
anything the builder does not reproduce exactly (it then *declines* the ledger), is built by the
processor's Python rules, and the pieces are joined in ledger order. ``tests/test_native_tables.py``
compares both on every real ledger and on generated ones, column by column.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import pyarrow as pa

from cdp_ray.xdr import Ledger

try:
    from cdp_ray.processors import _native
    from cdp_ray.xdr.fast.codec import CODEC
except ImportError:  # the C extensions were not built: every table is built by the Python rules
    _native = None

#: Raw XDR per call of the builder: the largest string column (base64 metas) stays below Arrow's 2 GB
MAX_BATCH_BYTES = 1 << 30

Reference = Callable[[list[Ledger]], pa.Table]


def available() -> bool:
    """Whether the native table builders are built."""
    return _native is not None


def _name_table(members, name: Callable) -> tuple[int, tuple]:
    """``(lowest value, names of values lowest .. highest)`` of an enum's members, None for gaps."""
    by_value = {int(m): name(m) for m in members}
    lo, hi = min(by_value), max(by_value)
    return lo, tuple(by_value.get(v) for v in range(lo, hi + 1))


def _name_tables() -> tuple:
    """The names the builders write, in ``native.h``'s order (N_TX_RESULT_CODE ...)."""
    from stellar_sdk import xdr

    from cdp_ray.processors.common import go_enum_name, go_enum_string
    from cdp_ray.processors.operation_details import OPERATION_TYPE_NAMES
    from cdp_ray.processors.operation_details import _SCV_ARM
    from cdp_ray.processors.operations import _result_code_enum
    from cdp_ray.processors.scval import _ERROR_TYPE

    tables = [
        _name_table(xdr.TransactionResultCode, go_enum_string),
        _name_table(xdr.OperationType, OPERATION_TYPE_NAMES.__getitem__),
        _name_table(xdr.MemoType, go_enum_string),
        _name_table(xdr.ContractEventType, go_enum_string),
        _name_table(xdr.LedgerEntryType, lambda t: go_enum_name(t, "LedgerEntryType")),
        _name_table(xdr.OperationResultCode, go_enum_string),
        _name_table(xdr.SCErrorType, _ERROR_TYPE.get),
        _name_table(xdr.SCErrorCode, lambda c: c.name.removeprefix("SCEC_").lower()),
        _name_table(xdr.SCErrorType, go_enum_string),
        _name_table(xdr.SCErrorCode, go_enum_string),
        _name_table(xdr.SCValType, lambda t: _SCV_ARM.get(t, "n/a")),
        _name_table(xdr.HostFunctionType, go_enum_string),
    ]
    tables += [_name_table(_result_code_enum(t), go_enum_string) for t in sorted(xdr.OperationType)]
    return tuple(tables)


@functools.cache
def _ready() -> None:
    """Hand the builders the codec and the names they write (once, at first use: the names come from the
    processor modules, which import this one)."""
    _native.setup(CODEC, _name_tables())


@functools.lru_cache(maxsize=16)
def _network(passphrase: str) -> tuple:
    """What the builders need of a network: ``(network id, native asset contract id, passphrase)``."""
    from stellar_sdk import xdr

    from cdp_ray.networks import network_id
    from cdp_ray.processors.scval import sac_contract_id

    native_sac = sac_contract_id(xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE), passphrase)
    return network_id(passphrase), native_sac, passphrase


_TYPES = {
    "b": pa.bool_(), "i": pa.int32(), "I": pa.uint32(), "q": pa.int64(), "Q": pa.uint64(), "d": pa.float64(),
}


def _array(column: tuple, type_: pa.DataType) -> pa.Array:
    """An Arrow array over a column's buffers as ``_native.build`` exports them (no copy)."""
    kind, length, nulls, valid, data, offsets, items, nitems = column
    valid = pa.py_buffer(valid) if valid is not None else None
    if kind == "s":
        return pa.Array.from_buffers(type_, length, [valid, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls)
    if kind == "S":
        child = pa.Array.from_buffers(pa.string(), nitems, [None, pa.py_buffer(items), pa.py_buffer(data)])
        return pa.Array.from_buffers(type_, length, [valid, pa.py_buffer(offsets)], null_count=nulls, children=[child])
    if kind == "U":
        child = pa.Array.from_buffers(pa.uint32(), nitems, [None, pa.py_buffer(data)])
        return pa.Array.from_buffers(type_, length, [valid, pa.py_buffer(offsets)], null_count=nulls, children=[child])
    return pa.Array.from_buffers(type_, length, [valid, pa.py_buffer(data)], null_count=nulls)


def check_schema(name: str, schema: pa.Schema) -> None:
    """Raise unless the builder of ``name`` makes ``schema``'s columns, in order, with matching kinds."""
    if _native is None:
        return
    built = _native.columns(name)
    kinds = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t):
            kinds.append((f.name, "t"))
        elif pa.types.is_string(t):
            kinds.append((f.name, "s"))
        elif pa.types.is_list(t):
            kinds.append((f.name, "S" if pa.types.is_string(t.value_type) else "U"))
        else:
            kinds.append((f.name, next(k for k, v in _TYPES.items() if v == t)))
    if built != kinds:
        raise TypeError(f"the native {name} builder makes {built}, the schema declares {kinds}")


_CHECKED: set[str] = set()


def _built(name: str, schema: pa.Schema, ledgers: Sequence[Ledger], options: tuple, hooks) -> tuple:
    """``(table, row ends, declined)`` of the builder over indexed ``ledgers`` (``hooks``: the builder's hooks,
    or a function of ``ledgers`` giving them)."""
    _ready()
    if name not in _CHECKED:
        check_schema(name, schema)
        _CHECKED.add(name)
    if callable(hooks):
        hooks = hooks(ledgers)
    items = [(ledger.raw, ledger.index, _network(ledger.network_passphrase)) for ledger in ledgers]
    columns, ends, declined = _native.build(name, items, options, hooks)
    arrays = [_array(c, f.type) for c, f in zip(columns, schema)]
    return pa.Table.from_arrays(arrays, schema=schema), ends, declined


def _runs(batch: Sequence[Ledger]):
    """Consecutive ledgers the builders read (indexed, each run under :data:`MAX_BATCH_BYTES`) and the others,
    as ``(native, ledgers)``."""
    run: list[Ledger] = []
    size = 0
    native = None
    for ledger in batch:
        is_native = ledger.index is not None and ledger.network_passphrase is not None
        if run and (is_native != native or (is_native and size + len(ledger.raw) > MAX_BATCH_BYTES)):
            yield native, run
            run, size = [], 0
        native = is_native
        run.append(ledger)
        size += len(ledger.raw) if is_native else 0
    if run:
        yield native, run


def table(
    name: str, schema: pa.Schema, batch: Sequence[Ledger], options: tuple, reference: Reference, hooks=None
) -> pa.Table:
    """Table ``name`` over ``batch``: indexed ledgers built by the native builder, the others and those it
    declines by ``reference`` (the processor's Python rules), joined in ledger order. ``hooks``: the Python
    callables the builder calls, or a function of the ledgers it builds giving them."""
    if _native is None:
        return reference(list(batch))
    pieces: list[pa.Table] = []
    for native, ledgers in _runs(batch):
        if not native:
            pieces.append(reference(ledgers))
            continue
        built, ends, declined = _built(name, schema, ledgers, options, hooks)
        if not declined:
            pieces.append(built)
            continue
        start = 0
        for position, ledger in enumerate(ledgers):
            end = ends[position]
            if position in declined:
                pieces.append(reference([ledger]))
            elif end > start:
                pieces.append(built.slice(start, end - start))
            start = end
    if len(pieces) == 1:
        return pieces[0]
    return pa.concat_tables(pieces) if pieces else reference([])


def declined(name: str, batch: Sequence[Ledger], options: tuple, hooks=None) -> dict[int, str]:
    """``{position: reason}`` of the ledgers of ``batch`` the builder of ``name`` leaves to the Python rules
    (for tests and benchmarks; ``batch`` must be indexed ledgers)."""
    from cdp_ray.processors.base import get_processor

    schema = get_processor(name).schema
    return _built(name, schema, batch, options, hooks)[2]
