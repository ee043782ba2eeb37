"""A uniform view over ``LedgerCloseMeta`` v0/v1/v2 decoded with ``stellar_sdk.xdr``.

Transactions are given in apply order (the order of ``txProcessing``), each joined with its envelope
from the transaction set by hash, which needs the network passphrase. A hash that no envelope has
means the passphrase is wrong (:class:`NetworkMismatchError`) or the ledger is incomplete.

The native engine (the default where the C extension is built) checks the XDR and joins transactions
with their envelopes in C without building values: its :class:`LazyLedger` holds the raw XDR and that
ledger index, which the processors' native table builders read, and decodes the values on first read.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone

from stellar_sdk import xdr

from cdp_ray.collector import gc_paused
from cdp_ray.errors import CorruptLedgerFileError, LedgerIntegrityError, NetworkMismatchError
from cdp_ray.networks import PASSPHRASES, network_id
from cdp_ray.xdr import fast
from cdp_ray.xdr.fast import source_xdr

_TX = (2).to_bytes(4, "big")
_FEE_BUMP = (5).to_bytes(4, "big")
_ED25519 = (0).to_bytes(4, "big")


class cached_property:  # noqa: N801  (functools.cached_property takes a lock per first read: 2-3 us)
    """A read-once attribute: computed on first read and stored in the instance's ``__dict__``."""

    def __init__(self, fn):
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


@dataclass
class Transaction:
    """One applied transaction: envelope, result, meta and fee changes, with its 1-based apply index.

    The derived attributes are computed once per transaction (processors read them per operation)."""

    index: int
    hash: bytes
    envelope: xdr.TransactionEnvelope
    result: xdr.TransactionResultPair
    meta: xdr.TransactionMeta
    fee_changes: xdr.LedgerEntryChanges
    post_apply_fee_changes: xdr.LedgerEntryChanges | None = None

    @cached_property
    def is_fee_bump(self) -> bool:
        return self.envelope.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP

    @cached_property
    def inner_envelope(self):
        """The v0/v1 envelope that carries the operations (the inner one of a fee bump)."""
        if self.is_fee_bump:
            return self.envelope.fee_bump.tx.inner_tx.v1
        return self.envelope.v1 if self.envelope.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX else self.envelope.v0

    @cached_property
    def tx(self):
        """The (inner) ``Transaction`` or ``TransactionV0`` body."""
        return self.inner_envelope.tx

    @cached_property
    def operations(self) -> list:
        return self.tx.operations

    @cached_property
    def result_code(self) -> xdr.TransactionResultCode:
        return self.result.result.result.code

    @cached_property
    def inner_result(self):
        """The ``TransactionResultResult`` holding operation results (inner result for fee bumps)."""
        r = self.result.result.result
        if r.code in (
            xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS,
            xdr.TransactionResultCode.txFEE_BUMP_INNER_FAILED,
        ):
            return r.inner_result_pair.result.result
        return r

    @cached_property
    def successful(self) -> bool:
        return self.result_code in (
            xdr.TransactionResultCode.txSUCCESS,
            xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS,
        )

    @cached_property
    def operation_results(self) -> list:
        return self.inner_result.results or []

    def operation_meta(self) -> list:
        """Per-operation meta entries (``OperationMeta`` or ``OperationMetaV2``), empty when absent."""
        return self._operation_meta

    @cached_property
    def _operation_meta(self) -> list:
        m = self.meta
        body = {0: None, 1: m.v1, 2: m.v2, 3: m.v3, 4: m.v4}[m.v]
        return (m.operations if m.v == 0 else body.operations) or []


@dataclass
class Ledger:
    """A decoded ledger with its transactions in apply order (derived attributes computed once)."""

    #: native engine (:class:`LazyLedger`): the ``LedgerCloseMeta`` XDR and its ledger index; else None
    raw = None
    index = None

    sequence: int
    lcm_version: int
    lcm: xdr.LedgerCloseMeta
    header_entry: xdr.LedgerHeaderHistoryEntry
    transactions: list[Transaction] = field(default_factory=list)
    envelopes: list[xdr.TransactionEnvelope] = field(default_factory=list)
    source_key: str | None = None
    xdr_size: int = 0
    network_passphrase: str | None = None

    @cached_property
    def header(self) -> xdr.LedgerHeader:
        return self.header_entry.header

    @cached_property
    def hash(self) -> bytes:
        return self.header_entry.hash.hash

    @cached_property
    def close_time(self) -> int:
        return self.header.scp_value.close_time.time_point.uint64

    @cached_property
    def closed_at(self) -> datetime:
        return datetime.fromtimestamp(self.close_time, tz=timezone.utc)

    @cached_property
    def protocol_version(self) -> int:
        return self.header.ledger_version.uint32

    @cached_property
    def body(self):
        return {0: self.lcm.v0, 1: self.lcm.v1, 2: self.lcm.v2}[self.lcm_version]

    def transaction_at(self, position: int) -> Transaction:
        """The transaction at 0-based ``position`` in apply order (a lazy ledger decodes only that one)."""
        return self.transactions[position]


#: ``LedgerIndexHead`` and ``LedgerIndexTx`` of ``fastxdr_api.h`` (native byte order, no padding)
_INDEX_HEAD = struct.Struct("=QQq16I")
_INDEX_TX = struct.Struct("=27I")
_LAZY = frozenset(("lcm", "header_entry", "transactions", "envelopes"))


class LazyLedger(Ledger):
    """A ledger of the native engine: its XDR checked and indexed (``Codec.ledger_index``), its values decoded
    on first read of ``lcm``, ``header_entry``, ``transactions`` or ``envelopes`` (a copy made with
    ``dataclasses.replace`` is an ordinary, decoded ledger without the index)."""

    @classmethod
    def from_index(cls, raw: bytes, index: bytes, network_passphrase: str, key: str | None) -> LazyLedger:
        head = _INDEX_HEAD.unpack_from(index)
        close_time, lcm_version, sequence, protocol, header_entry = head[0], head[4], head[5], head[6], head[9]
        self = object.__new__(cls)
        self.__dict__.update(
            sequence=sequence,
            lcm_version=lcm_version,
            source_key=key,
            xdr_size=len(raw),
            network_passphrase=network_passphrase,
            raw=raw,
            index=index,
            close_time=close_time,
            protocol_version=protocol,
            hash=raw[header_entry : header_entry + 32],
            _singles={},
        )
        return self

    def __getattr__(self, name: str):
        if name in _LAZY:
            self._materialize()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        decoded = "transactions" in self.__dict__
        return f"LazyLedger(sequence={self.sequence}, xdr_size={self.xdr_size}, decoded={decoded})"

    def _tx_spans(self, position: int) -> tuple:
        ntx = _INDEX_HEAD.unpack_from(self.index)[7]
        if not 0 <= position < ntx:
            raise IndexError(f"ledger {self.sequence} has {ntx} transactions, not {position + 1}")
        return _INDEX_TX.unpack_from(self.index, _INDEX_HEAD.size + position * _INDEX_TX.size)

    def _materialize(self) -> None:
        lcm = fast.decode("LedgerCloseMeta", self.raw)
        body = {0: lcm.v0, 1: lcm.v1, 2: lcm.v2}[lcm.v]
        envs = tx_set_envelopes(lcm)
        txs = []
        for i, trm in enumerate(body.tx_processing):
            env_index = self._tx_spans(i)[15]
            txs.append(_transaction(i + 1, trm, envs[env_index]))
        self.__dict__.update(lcm=lcm, header_entry=body.ledger_header, transactions=txs, envelopes=envs)
        self._singles.clear()

    def transaction_at(self, position: int) -> Transaction:
        if "transactions" in self.__dict__:
            return self.transactions[position]
        t = self._singles.get(position)
        if t is None:
            spans = self._tx_spans(position)
            kind = "TransactionResultMetaV1" if self.lcm_version == 2 else "TransactionResultMeta"
            trm = fast.decode_prefix(kind, self.raw, spans[0])[0]
            env = fast.decode_prefix("TransactionEnvelope", self.raw, spans[10])[0]
            t = self._singles[position] = _transaction(position + 1, trm, env)
        return t


def _transaction(index: int, trm, env: xdr.TransactionEnvelope) -> Transaction:
    """The :class:`Transaction` of a ``TransactionResultMeta(V1)`` and its envelope."""
    return Transaction(
        index=index,
        hash=trm.result.transaction_hash.hash,
        envelope=env,
        result=trm.result,
        meta=trm.tx_apply_processing,
        fee_changes=trm.fee_processing,
        post_apply_fee_changes=getattr(trm, "post_tx_apply_fee_processing", None),
    )


def envelope_hash(env: xdr.TransactionEnvelope, nid: bytes) -> bytes:
    """Transaction hash: sha256 of the ``TransactionSignaturePayload`` for network id ``nid``.

    The body's bytes are those it was decoded from when the fast engine kept them (:func:`source_xdr`).
    """
    t = env.type
    if t == xdr.EnvelopeType.ENVELOPE_TYPE_TX:
        payload = _TX + source_xdr(env.v1.tx)
    elif t == xdr.EnvelopeType.ENVELOPE_TYPE_TX_V0:
        # A v0 body re-encodes as a v1 body by prefixing KEY_TYPE_ED25519: optional timeBounds and
        # PRECOND_NONE/PRECOND_TIME share one encoding.
        payload = _TX + _ED25519 + source_xdr(env.v0.tx)
    else:
        payload = _FEE_BUMP + source_xdr(env.fee_bump.tx)
    return hashlib.sha256(nid + payload).digest()


def tx_set_envelopes(lcm: xdr.LedgerCloseMeta) -> list[xdr.TransactionEnvelope]:
    """Every envelope of the ledger's transaction set (classic or generalized, parallel phases too)."""
    body = {0: lcm.v0, 1: lcm.v1, 2: lcm.v2}[lcm.v]
    if lcm.v == 0:
        return list(body.tx_set.txs)
    out: list[xdr.TransactionEnvelope] = []
    for phase in body.tx_set.v1_tx_set.phases:
        if phase.v == 0:
            for comp in phase.v0_components:
                out.extend(comp.txs_maybe_discounted_fee.txs)
        else:
            for stage in phase.parallel_txs_component.execution_stages:
                for cluster in stage.parallel_tx_execution_stage:
                    out.extend(cluster.dependent_tx_cluster)
    return out


def decode_lcm(
    data: bytes, key: str | None = None, sequence: int | None = None, *, engine: str | None = None
) -> xdr.LedgerCloseMeta:
    """Decode ``LedgerCloseMeta`` XDR, turning decoder failures into :class:`CorruptLedgerFileError`.

    ``engine`` is ``"native"``, ``"fast"`` or ``"sdk"`` (see :mod:`cdp_ray.xdr.fast`); None picks the default.
    """
    use = fast.resolve_engine(engine)
    try:
        if use != "sdk":
            return fast.decode("LedgerCloseMeta", data)  # its values are off the collector's lists already
        with gc_paused():  # else collector passes re-walk every value held, the ledgers decoded before included
            return xdr.LedgerCloseMeta.from_xdr_bytes(data)
    except Exception as exc:  # stellar_sdk raises ValueError, struct.error, EOFError, xdrlib errors...
        raise CorruptLedgerFileError(
            key or "<bytes>", f"undecodable LedgerCloseMeta XDR ({type(exc).__name__}: {exc})", sequence=sequence
        ) from exc


def _detect_network(envs: list[xdr.TransactionEnvelope], wanted: bytes) -> str | None:
    for passphrase in PASSPHRASES.values():
        nid = network_id(passphrase)
        if any(envelope_hash(e, nid) == wanted for e in envs):
            return passphrase
    return None


def decode_ledger(
    data: bytes,
    network_passphrase: str,
    *,
    key: str | None = None,
    verify: bool = True,
    engine: str | None = None,
) -> Ledger:
    """Decode one ``LedgerCloseMeta`` and join its transactions with their envelopes.

    With ``verify`` the header hash is checked (sha256 of the header XDR). ``engine`` picks the XDR
    decoder, ``"native"``, ``"fast"`` or ``"sdk"`` (default: native when built, see :mod:`cdp_ray.xdr.fast`).
    The native engine returns a :class:`LazyLedger`; input it does not index (rejected XDR, non-canonical
    forms, a transaction without its envelope, a wrong header hash) is decoded at once instead, which
    raises what it must.
    """
    if fast.resolve_engine(engine) == "native":
        ledger = _indexed(data, network_passphrase, key, verify)
        if ledger is not None:
            return ledger
        engine = "fast"
    lcm = decode_lcm(data, key, engine=engine)
    body = {0: lcm.v0, 1: lcm.v1, 2: lcm.v2}[lcm.v]
    entry = body.ledger_header
    seq = entry.header.ledger_seq.uint32
    if verify:
        digest = hashlib.sha256(entry.header.to_xdr_bytes()).digest()
        if digest != entry.hash.hash:
            raise LedgerIntegrityError(
                f"ledger {seq} in {key or '<bytes>'}: header hash {entry.hash.hash.hex()} does not match "
                f"sha256 of the header {digest.hex()}",
                sequence=seq,
                key=key,
            )
    envs = tx_set_envelopes(lcm)
    nid = network_id(network_passphrase)
    by_hash = {envelope_hash(e, nid): e for e in envs}
    txs: list[Transaction] = []
    for i, trm in enumerate(body.tx_processing, start=1):
        h = trm.result.transaction_hash.hash
        env = by_hash.get(h)
        if env is None:
            detected = _detect_network(envs, h)
            if detected != network_passphrase:
                raise NetworkMismatchError(seq, network_passphrase, detected)
            raise LedgerIntegrityError(
                f"ledger {seq} in {key or '<bytes>'}: transaction {h.hex()} has a result but no envelope "
                "in the transaction set",
                sequence=seq,
                key=key,
            )
        txs.append(_transaction(i, trm, env))
    return Ledger(
        sequence=seq,
        lcm_version=lcm.v,
        lcm=lcm,
        header_entry=entry,
        transactions=txs,
        envelopes=envs,
        source_key=key,
        network_passphrase=network_passphrase,
        xdr_size=len(data),
    )


def check_index_layout() -> None:
    """Raise unless the index structs read here have the sizes the extension's C structs have."""
    sizes = fast.INDEX_SIZES
    if (_INDEX_HEAD.size, _INDEX_TX.size) != sizes[:2]:
        raise TypeError(f"ledger index layout: C structs of {sizes[:2]} bytes, read as {_INDEX_HEAD.size, _INDEX_TX.size}")


def _indexed(data: bytes, network_passphrase: str, key: str | None, verify: bool) -> LazyLedger | None:
    """A :class:`LazyLedger` of ``data``, or None where the ledger must be decoded at once (see :func:`decode_ledger`)."""
    try:
        index = fast.ledger_index(data, network_id(network_passphrase))
    except Exception:  # noqa: BLE001  (rejected input: decode() names the problem)
        return None
    head = _INDEX_HEAD.unpack_from(index)
    if head[17]:  # flags: non-canonical forms, unmatched transactions
        return None
    header_entry, header, header_end = head[9], head[10], head[11]
    if verify and hashlib.sha256(data[header:header_end]).digest() != data[header_entry : header_entry + 32]:
        return None
    return LazyLedger.from_index(data if isinstance(data, bytes) else bytes(data), index, network_passphrase, key)
