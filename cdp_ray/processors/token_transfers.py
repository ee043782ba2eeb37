"""``token_transfers``: CAP-67 / SEP-41 transfer, mint, burn, clawback and fee events (stellar-etl).

Rows follow the Go SDK's ``token_transfer`` processor in its unified-events mode, the mode stellar-etl
runs: fee events come from the transaction-level events of meta v4 and movements from each operation's
events, for classic operations (which the data lake's v4 re-encoding and protocol 23+ carry) and Soroban
contracts alike. A contract event counts when it is SEP-41 shaped (``transfer``/``mint``/``burn``/
``clawback`` symbol, address topics, an ``i128`` amount or an ``{amount, to_muxed_id}`` map); its asset
is filled in only when the last topic names a SEP-11 asset whose Stellar Asset Contract id is the
emitting contract's.

Order within a ledger is the Go processor's: every transaction's fee charge first, then operation
events transaction by transaction, with fee refunds right after their transaction's operation events
before protocol 23 and all together at the end from protocol 23 on. ``event_index`` is that position.

Meta v0-v3 hold no unified events. With ``source: auto`` (the default) their events are *derived* the
way the Go processor does without unified events: fees from the result and the fee account's balance
changes, movements from each operation's type, result and ledger entry changes (payments, path
payments and offers by their claimed atoms, claimable balances, clawbacks, liquidity pool deposits and
withdrawals, CAP-38 trustline revocations, inflation), Soroban events from ``sorobanMeta.events`` with
the meta v3 topic layout, and before protocol 8 an XLM mint/burn that reconciles the source account's
balance. ``source: events`` reproduces stellar-etl exactly and refuses older meta; ``source: derived``
derives for every transaction, meta v4 included (a cross-check of the two).

With ``verify`` (on by default, as in stellar-etl) each transaction's events, fees included, must add
up to the balance changes in its fee, transaction and operation ledger changes, or the ledger fails
with :class:`TokenTransferMismatchError`.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import StrKey, xdr

from cdp_ray.errors import CdpRayError
from cdp_ray.processors import native
from cdp_ray.processors.base import col, processor, table_from_rows
from cdp_ray.processors.common import (
    TIMESTAMP,
    account_id,
    asset_parts,
    claimable_balance_id_strkey,
    contract_strkey,
    pool_id_strkey,
    strkey,
    toid,
)
from cdp_ray.processors.entries import changes_from
from cdp_ray.processors.scval import (
    account_id_xdr,
    event_summary,
    native_sac_strkey,
    sac_asset,
    sac_contract_id,
    scval_address,
    scval_i128,
    scval_string,
    scval_symbol,
)
from cdp_ray.xdr import Ledger, Transaction, fast
from cdp_ray.xdr.fast import raw_xdr

TOKEN_TRANSFERS_SCHEMA = pa.schema(
    [
        col("transaction_hash", pa.string(), "hex transaction hash", nullable=False),
        col("transaction_id", pa.int64(), "TOID of the transaction", nullable=False),
        col("operation_id", pa.int64(), "TOID of the operation, null for fee events"),
        col("event_topic", pa.string(), "transfer, mint, burn, clawback or fee", nullable=False),
        col("from", pa.string(), "sender (G, C, L or B strkey); null for mint"),
        col("to", pa.string(), "recipient; null for burn, clawback and fee"),
        col("asset", pa.string(), "native or type:code:issuer; '' when the token is not a Stellar asset"),
        col("asset_type", pa.string(), "native, credit_alphanum4, credit_alphanum12 or ''"),
        col("asset_code", pa.string(), "asset code, null for native or unknown tokens"),
        col("asset_issuer", pa.string(), "asset issuer, null for native or unknown tokens"),
        col("amount", pa.float64(), "amount_raw * 1e-7 as float64 (stellar-etl)"),
        col("amount_raw", pa.string(), "exact amount in the token's smallest unit (i128, negative for fee refunds)"),
        col("contract_id", pa.string(), "C... of the token contract (the asset's SAC for classic assets)"),
        col("ledger_sequence", pa.uint32(), "ledger sequence", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)"),
        col("to_muxed", pa.string(), "M... address of the recipient when the event carries a to_muxed_id"),
        col("to_muxed_id", pa.string(), "decimal to_muxed_id (0 for text/hash memos, as stellar-etl)"),
        col("event_index", pa.int32(), "0-based position in the ledger's event stream", nullable=False),
    ]
)


class TokenTransfersConfig(BaseModel):
    """Options of the ``token_transfers`` processor."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["auto", "events", "derived"] = Field(
        "auto",
        description="events: read CAP-67 events of meta v4 and refuse older meta (stellar-etl); derived: "
        "derive events from operations, results and ledger changes; auto: events for meta v4, else derived",
    )
    verify: bool = Field(
        True,
        description="check, as stellar-etl does, that each transaction's events account exactly for the balance "
        "changes of its accounts, trustlines, claimable balances and pools (contract balances excluded)",
    )


class LegacyMetaError(CdpRayError):
    """A transaction's meta predates CAP-67 unified events."""

    hint = (
        "use `source: auto` to derive their events from operations and ledger changes, or read a data lake "
        "that re-encodes history as meta v4 (e.g. the AWS public blockchain lake)"
    )


class TokenTransferMismatchError(CdpRayError):
    """A transaction's token transfer events do not add up to its ledger balance changes."""

    hint = "the ledger's meta is inconsistent or the events were misread; report the ledger, or set verify: false"


class InvalidFeeEventError(CdpRayError):
    """A transaction-level fee event is malformed (the ledger does not follow CAP-67)."""

    hint = "the ledger's meta is not valid CAP-67; check its source"


_EXPECTED_TOPICS = {"transfer": 4, "mint": 3, "burn": 3, "clawback": 3}
_CONTRACT_EVENT = xdr.ContractEventType.CONTRACT
_SCV_MAP = xdr.SCValType.SCV_MAP
_SC_ACCOUNT = xdr.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT
#: A row: the schema's values up to ``to_muxed_id``, in schema order (``event_index`` is added per ledger).
Row = tuple
_NAMES = tuple(TOKEN_TRANSFERS_SCHEMA.names)
_ROW_NAMES = _NAMES[:-1]
_TOPIC, _FROM, _TO, _ASSET, _AMOUNT_RAW = (_NAMES.index(n) for n in ("event_topic", "from", "to", "asset", "amount_raw"))
_as_row = operator.itemgetter(*_ROW_NAMES)  # a dict row's values as a Row
_NO_ASSET = ("", "", None, None)
_NATIVE_COLUMNS = ("native", "native", None, None)


def _asset_columns(asset: xdr.Asset | None) -> tuple:
    """``(asset, asset_type, asset_code, asset_issuer)`` of an asset, or of a token that is none (None)."""
    if asset is None:
        return _NO_ASSET
    t, code, issuer = asset_parts(asset)
    if t == "native":
        return _NATIVE_COLUMNS
    t = "credit_alphanum12" if len(code) > 4 else "credit_alphanum4"
    return f"{t}:{code}:{issuer}", t, code, issuer


@functools.lru_cache(maxsize=4096)
def _sac_columns(name: str, contract_id: bytes, passphrase: str) -> tuple:
    """Asset columns of a SEP-41 event whose last topic is ``name`` from contract ``contract_id`` (raw)."""
    return _asset_columns(sac_asset(name, contract_id, passphrase))


_NO_MUXED = (None, None)


def _muxed_columns(account: bytes, muxed_id: int) -> tuple[str, str]:
    """``(to_muxed, to_muxed_id)`` of ``muxed_id`` on the account whose ed25519 key is ``account``."""
    return strkey("M", account + muxed_id.to_bytes(8, "big")), str(muxed_id)


def _muxed(to: str | None, muxed_id: int | None) -> tuple[str | None, str | None]:
    """``(to_muxed, to_muxed_id)`` of a recipient strkey: nulls unless an account with a muxed id."""
    if muxed_id is None or to is None or not to.startswith("G"):
        return _NO_MUXED
    return _muxed_columns(StrKey.decode_ed25519_public_key(to), muxed_id)


class _Ctx:
    """Per-ledger state: network, native asset contract and the columns rows share."""

    def __init__(self, ledger: Ledger, passphrase: str):
        self.ledger = ledger
        self.passphrase = passphrase
        self.native = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)
        self.native_sac_id = sac_contract_id(self.native, passphrase)
        self.native_sac = native_sac_strkey(passphrase)
        self.sequence = ledger.sequence
        self.closed_at = ledger.closed_at
        self._tx: Transaction | None = None
        self._tx_columns: tuple[str, int] = ("", 0)

    def row(self, tx: Transaction, op_index: int | None, topic: str, frm: str | None, to: str | None, amount: int,
            columns: tuple, contract_id: str, muxed: tuple = _NO_MUXED) -> Row:
        """A row; ``columns`` are the asset's (:func:`_asset_columns`), ``muxed`` the recipient's
        ``(to_muxed, to_muxed_id)``. The transaction's columns are computed once for its consecutive rows."""
        if tx is not self._tx:
            self._tx, self._tx_columns = tx, (tx.hash.hex(), toid(self.sequence, tx.index))
        tx_hash, tx_id = self._tx_columns
        asset, asset_type, code, issuer = columns
        to_muxed, to_muxed_id = muxed
        return (
            tx_hash, tx_id, None if op_index is None else tx_id | op_index,  # toid(sequence, tx.index, op_index)
            topic, frm, to, asset, asset_type, code, issuer, float(amount) * 0.0000001, str(amount), contract_id,
            self.sequence, self.closed_at, to_muxed, to_muxed_id,
        )


def _fee_rows(ctx: _Ctx, tx: Transaction) -> list[Row]:
    rows = []
    for te in tx.meta.v4.events or []:
        contract, event_type, ntopics, symbol, frm, _, _, _, amount = event_summary(te.event)
        if event_type != _CONTRACT_EVENT or contract is None:
            raise InvalidFeeEventError(f"ledger {ctx.sequence} tx {tx.hash.hex()}: malformed transaction event")
        if symbol != "fee":
            continue
        if amount is None or ntopics != 2 or frm is None or contract != ctx.native_sac_id:
            raise InvalidFeeEventError(
                f"ledger {ctx.sequence} tx {tx.hash.hex()}: fee event needs topics [fee, address], an i128 "
                f"amount and the native asset contract {ctx.native_sac}, got contract {contract_strkey(contract)}"
            )
        rows.append(ctx.row(tx, None, "fee", frm, None, amount, _NATIVE_COLUMNS, ctx.native_sac))
    if not 1 <= len(rows) <= 2:
        raise InvalidFeeEventError(
            f"ledger {ctx.sequence} tx {tx.hash.hex()}: {len(rows)} fee events, expected 1 or 2"
        )
    return rows


def _amount_and_muxed(data: xdr.SCVal) -> tuple[int, int | None] | None:
    """SEP-41 event data: an ``i128``, or a map with ``amount`` (i128) and optional ``to_muxed_id``."""
    if data.type != _SCV_MAP:
        amount = scval_i128(data)
        return None if amount is None else (amount, None)
    if data.map is None:
        return None
    amount = muxed_id = None
    for entry in data.map.sc_map:
        key = scval_symbol(entry.key)
        if key is None:
            return None
        if key == "amount":
            amount = scval_i128(entry.val)
            if amount is None:
                return None
        elif key == "to_muxed_id":
            t = entry.val.type
            if t == xdr.SCValType.SCV_U64:
                muxed_id = entry.val.u64.uint64
            elif t in (xdr.SCValType.SCV_BYTES, xdr.SCValType.SCV_STRING):
                muxed_id = 0  # a hash / text memo: stellar-etl's GetId() reads 0
            else:
                return None
    return None if amount is None else (amount, muxed_id)


def _operation_row(ctx: _Ctx, tx: Transaction, op_index: int, ev: xdr.ContractEvent) -> Row | None:
    """A row for a SEP-41 shaped contract event, ``None`` for any other event."""
    contract, event_type, ntopics, fn, first, second, name, data_type, amount = event_summary(ev)
    if event_type != _CONTRACT_EVENT or contract is None or ntopics < 2 or fn not in _EXPECTED_TOPICS:
        return None
    muxed_id = None
    if data_type == _SCV_MAP:  # {amount, to_muxed_id}: read from the values
        parsed = _amount_and_muxed(ev.body.v0.data)
        if parsed is None:
            return None
        amount, muxed_id = parsed
    elif amount is None:
        return None
    frm = to = None
    if fn == "transfer":
        if ntopics < 3 or first is None or second is None:
            return None
        frm, to = first, second
    elif first is None:
        return None
    elif fn == "mint":
        to = first
    else:
        frm = first
    muxed = _NO_MUXED
    if muxed_id is not None and to is not None:
        recipient = ev.body.v0.topics[2 if fn == "transfer" else 1].address
        if recipient.type == _SC_ACCOUNT:
            muxed = _muxed_columns(recipient.account_id.account_id.ed25519.uint256, muxed_id)
    columns = _NO_ASSET
    if ntopics == _EXPECTED_TOPICS[fn] and name:
        columns = _sac_columns(name, contract, ctx.passphrase)
    return ctx.row(tx, op_index, fn, frm, to, amount, columns, strkey("C", contract), muxed)


def _context(ledger: Ledger) -> _Ctx:
    passphrase = getattr(ledger, "network_passphrase", None)
    if not passphrase:
        raise CdpRayError(
            f"ledger {ledger.sequence}: network passphrase unknown",
            hint="decode ledgers with cdp_ray.xdr.decode_ledger(data, network_passphrase)",
        )
    return _Ctx(ledger, passphrase)


def _op_rows(ctx: _Ctx, tx: Transaction) -> list[Row]:
    rows = []
    if tx.successful:
        for i, op_meta in enumerate(tx.meta.v4.operations, start=1):
            for ev in op_meta.events or []:
                row = _operation_row(ctx, tx, i, ev)
                if row is not None:
                    rows.append(row)
    return rows


def _dicts(rows: list[Row], names: tuple[str, ...] = _ROW_NAMES) -> list[dict]:
    """The rows as dicts, the public functions' form."""
    return [dict(zip(names, r)) for r in rows]


def operation_token_transfers(ledger: Ledger, tx: Transaction) -> list[dict]:
    """Rows of one meta-v4 transaction's operation events only (no fee events, no ``event_index``).

    Useful for transactions whose transaction-level events were stripped, as RPC responses do.
    """
    return _dicts(_op_rows(_context(ledger), tx))


def derived_operation_token_transfers(ledger: Ledger, tx: Transaction) -> list[dict]:
    """Rows derived from one transaction's operations, results and ledger changes (no fee events)."""
    return _dicts(_Deriver(_context(ledger), tx).operations())


def _ledger_rows(ledger: Ledger, config: TokenTransfersConfig) -> list[tuple]:
    """All rows of one ledger with their ``event_index``, in the Go processor's order (verified if asked)."""
    ctx = _context(ledger)
    p23 = ledger.protocol_version >= 23
    fees: list[Row] = []
    ops: list[Row] = []
    refunds: list[Row] = []
    verified: list[tuple[Transaction, list[Row]]] = []
    for tx in ledger.transactions:
        derive = config.source == "derived" or (config.source == "auto" and tx.meta.v != 4)
        if derive:
            deriver = _Deriver(ctx, tx)
            tx_fees, tx_ops = deriver.fees(), deriver.operations()
        elif tx.meta.v != 4:
            raise LegacyMetaError(
                f"ledger {ledger.sequence} tx {tx.hash.hex()}: transaction meta v{tx.meta.v} has no CAP-67 "
                "unified events (source: events needs meta v4, as stellar-etl does)"
            )
        else:
            tx_fees, tx_ops = _fee_rows(ctx, tx), _op_rows(ctx, tx)
        fees.append(tx_fees[0])
        ops.extend(tx_ops)
        if len(tx_fees) == 2:
            (refunds if p23 else ops).append(tx_fees[1])
        if config.verify:
            verified.append((tx, tx_fees + tx_ops))
    for tx, tx_rows in verified:
        _verify_transaction(ledger, tx, tx_rows)
    return [r + (i,) for i, r in enumerate(fees + ops + refunds)]


def ledger_token_transfers(ledger: Ledger, config: TokenTransfersConfig | None = None) -> list[dict]:
    """All token transfer rows of one ledger, in the Go processor's order."""
    return _dicts(_ledger_rows(ledger, config or TokenTransfersConfig()), _NAMES)


@processor(
    "token_transfers",
    schema=TOKEN_TRANSFERS_SCHEMA,
    primary_key=("ledger_sequence", "event_index"),
    description="CAP-67 / SEP-41 token movements (transfer, mint, burn, clawback, fee), classic and Soroban "
    "alike: unified events of meta v4 (stellar-etl token_transfers), derived from operations for older meta.",
    config=TokenTransfersConfig,
    tags=("core", "soroban", "events"),
)
def token_transfers(batch: list[Ledger], config: TokenTransfersConfig) -> pa.Table:
    hooks = (_sac_columns, _NATIVE_COLUMNS, _NO_ASSET, {})
    return native.table(
        "token_transfers", TOKEN_TRANSFERS_SCHEMA, batch, (config.source, config.verify),
        functools.partial(_python_table, config), hooks,
    )


def _python_table(config: TokenTransfersConfig, batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    return table_from_rows(TOKEN_TRANSFERS_SCHEMA, [r for ledger in batch for r in _ledger_rows(ledger, config)])


# --- derived events: meta v0-v3 (the Go processor without unified events) -----------------------------

_OT = xdr.OperationType
_CT = xdr.LedgerEntryChangeType
_LT = xdr.LedgerEntryType
_SEP41_V3_TOPICS = {"transfer": 4, "mint": 4, "clawback": 4, "burn": 3}


class DerivationError(CdpRayError):
    """An operation's result or ledger changes do not support the events it must have produced."""

    hint = "the ledger's meta looks inconsistent; check its source, or read a data lake that carries meta v4"


def _account(m: xdr.MuxedAccount) -> tuple[str, int | None]:
    """``(G..., muxed id or None)`` of a ``MuxedAccount``."""
    if m.type == xdr.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        return strkey("G", m.med25519.ed25519.uint256), m.med25519.id.uint64
    return strkey("G", m.ed25519.uint256), None


def _tx_source(tx: Transaction) -> tuple[str, int | None]:
    """Source of the (inner) transaction."""
    body = tx.tx
    if isinstance(body, xdr.TransactionV0):
        return strkey("G", body.source_account_ed25519.uint256), None
    return _account(body.source_account)


def _op_source(tx: Transaction, op: xdr.Operation) -> tuple[str, int | None]:
    return _account(op.source_account) if op.source_account is not None else _tx_source(tx)


def _fee_account(tx: Transaction) -> str:
    """G... that paid the fee: the fee-bump source, else the transaction source."""
    return _account(tx.envelope.fee_bump.tx.fee_source)[0] if tx.is_fee_bump else _tx_source(tx)[0]


def _changes(group) -> list[tuple]:
    """``(entry type, pre data, post data, change type)`` of a ``LedgerEntryChanges`` group, in Go's
    ``GetChangesFromLedgerEntryChanges`` order (see :func:`cdp_ray.processors.entries.changes_from`)."""
    return [
        (c.entry_type, c.pre.data if c.pre is not None else None, c.post.data if c.post is not None else None,
         _CT(c.change_type))
        for c in changes_from(group)
    ]


def operation_changes(tx: Transaction, op_index0: int) -> list[tuple]:
    """``(entry type, pre, post, change type)`` of the 0-based ``op_index0``-th operation's ledger changes."""
    metas = tx.operation_meta()
    if op_index0 >= len(metas):
        return []
    return _changes(metas[op_index0].changes)


def _account_balances(entry_changes, account: str) -> tuple[int, int]:
    """(start, end) XLM balance of ``account`` in a change list; the last STATE / UPDATED win, as in Go."""
    start = end = 0
    for c in entry_changes or []:
        if c.type == _CT.LEDGER_ENTRY_STATE and c.state.data.type == _LT.ACCOUNT:
            if account_id(c.state.data.account.account_id) == account:
                start = c.state.data.account.balance.int64
        elif c.type == _CT.LEDGER_ENTRY_UPDATED and c.updated.data.type == _LT.ACCOUNT:
            if account_id(c.updated.data.account.account_id) == account:
                end = c.updated.data.account.balance.int64
    return start, end


def _is_soroban_tx(tx: Transaction) -> bool:
    ext = getattr(tx.tx, "ext", None)
    return ext is not None and ext.v == 1


class _Deriver:
    """Token transfer events of one transaction from its operations, results and ledger changes."""

    def __init__(self, ctx: _Ctx, tx: Transaction):
        self.ctx, self.tx = ctx, tx

    def sac(self, asset: xdr.Asset) -> str:
        return contract_strkey(sac_contract_id(asset, self.ctx.passphrase))

    def memo_muxed_id(self) -> int | None:
        m = self.tx.tx.memo
        if m.type == xdr.MemoType.MEMO_NONE:
            return None
        return m.id.uint64 if m.type == xdr.MemoType.MEMO_ID else 0

    def event(self, op, topic, asset, amount, frm=None, to=None, muxed_id=None) -> Row:
        return self.ctx.row(self.tx, op, topic, frm, to, amount, _asset_columns(asset), self.sac(asset),
                            _muxed(to, muxed_id))

    def move(self, op: int, asset: xdr.Asset, frm: str, to: str, amount: int, *,
             to_muxed: int | None = None, mux: bool = False) -> Row:
        """Go's ``mintOrBurnOrTransferEvent``: a transfer, or a mint / burn when the issuer is a party."""
        issuer = None if asset.type == xdr.AssetType.ASSET_TYPE_NATIVE else asset_parts(asset)[2]
        from_issuer = issuer is not None and frm == issuer
        to_issuer = issuer is not None and to == issuer
        muxed_id = None
        if mux and to.startswith("G"):
            muxed_id = to_muxed if to_muxed is not None else self.memo_muxed_id()
        if from_issuer and not to_issuer:
            return self.event(op, "mint", asset, amount, to=to, muxed_id=muxed_id)
        if to_issuer and not from_issuer:
            return self.event(op, "burn", asset, amount, frm=frm)
        return self.event(op, "transfer", asset, amount, frm=frm, to=to, muxed_id=muxed_id)

    def fees(self) -> list[Row]:
        tx, native = self.tx, self.ctx.native
        payer = _fee_account(tx)
        if not _is_soroban_tx(tx):
            return [self.event(None, "fee", native, tx.result.result.fee_charged.int64, frm=payer)]
        start, end = _account_balances(tx.fee_changes.ledger_entry_changes, payer)
        rows = [self.event(None, "fee", native, start - end, frm=payer)]
        m = tx.meta
        after = list((m.v3 if m.v == 3 else m.v4).tx_changes_after.ledger_entry_changes) if m.v in (3, 4) else []
        if tx.post_apply_fee_changes is not None:
            after += list(tx.post_apply_fee_changes.ledger_entry_changes)
        start, end = _account_balances(after, payer)
        if end - start > 0:
            rows.append(self.event(None, "fee", native, -(end - start), frm=payer))
        return rows

    def claim_atoms(self, op: int, source: str, atoms) -> list[Row]:
        rows = []
        for atom in atoms:
            if atom.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_LIQUIDITY_POOL:
                a = atom.liquidity_pool
                seller = pool_id_strkey(a.liquidity_pool_id)
            elif atom.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK:
                a = atom.order_book
                seller = account_id(a.seller_id)
            else:
                a = atom.v0
                seller = strkey("G", a.seller_ed25519.uint256)
            # core's CAP-67 order: what the taker pays the seller, then what the seller pays the taker
            rows.append(self.move(op, a.asset_bought, source, seller, a.amount_bought.int64))
            rows.append(self.move(op, a.asset_sold, seller, source, a.amount_sold.int64))
        return rows

    def removed_claimable_balance(self, op0: int) -> xdr.ClaimableBalanceEntry:
        found = [pre.claimable_balance for t, pre, _, ct in operation_changes(self.tx, op0)
                 if t == _LT.CLAIMABLE_BALANCE and ct == _CT.LEDGER_ENTRY_REMOVED]
        if len(found) != 1:
            raise DerivationError(
                f"tx {self.tx.hash.hex()} op {op0 + 1}: {len(found)} removed claimable balances, expected 1"
            )
        return found[0]

    def pool_deltas(self, op0: int) -> list[tuple]:
        """``(pool id, asset A, asset B, |ΔA|, |ΔB|)`` of every liquidity pool the operation changed."""
        out = []
        for t, pre, post, _ in operation_changes(self.tx, op0):
            if t != _LT.LIQUIDITY_POOL:
                continue
            pa_ = pre.liquidity_pool.body.constant_product if pre is not None else None
            po = post.liquidity_pool.body.constant_product if post is not None else None
            entry = (post or pre).liquidity_pool
            cp = (po or pa_)
            da = (po.reserve_a.int64 if po else 0) - (pa_.reserve_a.int64 if pa_ else 0)
            db = (po.reserve_b.int64 if po else 0) - (pa_.reserve_b.int64 if pa_ else 0)
            out.append((entry.liquidity_pool_id, cp.params.asset_a, cp.params.asset_b, abs(da), abs(db)))
        return out

    def single_pool(self, op0: int) -> tuple:
        deltas = self.pool_deltas(op0)
        if len(deltas) != 1:
            raise DerivationError(
                f"tx {self.tx.hash.hex()} op {op0 + 1}: {len(deltas)} liquidity pools changed, expected 1"
            )
        return deltas[0]

    def revoked_trustline_events(self, op: int, op0: int) -> list[Row]:
        """CAP-38: revoking a trustline turns the trustor's pool shares into claimable balances."""
        pools = self.pool_deltas(op0)
        if not pools:
            return []
        created = {
            post.claimable_balance.balance_id.v0.hash: post.claimable_balance
            for t, _, post, ct in operation_changes(self.tx, op0)
            if t == _LT.CLAIMABLE_BALANCE and ct == _CT.LEDGER_ENTRY_CREATED
        }
        if not created:
            return []
        source = account_id_xdr(_tx_source(self.tx)[0])
        seq = self.tx.tx.seq_num
        rows = []
        for pool_id, asset_a, asset_b, delta_a, delta_b in pools:
            mine = []
            for asset in (asset_a, asset_b):
                pre = xdr.HashIDPreimage(
                    xdr.EnvelopeType.ENVELOPE_TYPE_POOL_REVOKE_OP_ID,
                    revoke_id=xdr.HashIDPreimageRevokeID(source, seq, xdr.Uint32(op0), pool_id, asset),
                )
                cb = created.get(hashlib.sha256(pre.to_xdr_bytes()).digest())
                if cb is not None:
                    mine.append(cb)
            lp = pool_id_strkey(pool_id)
            if len(mine) == 1:
                cb = mine[0]
                burned, burned_amount = (asset_b, delta_b) if cb.asset == asset_a else (asset_a, delta_a)
                rows.append(self.move(op, cb.asset, lp, claimable_balance_id_strkey(cb.balance_id), cb.amount.int64))
                rows.append(self.event(op, "burn", burned, burned_amount, frm=lp))
            else:
                for cb in mine:
                    cb_id = claimable_balance_id_strkey(cb.balance_id)
                    rows.append(self.move(op, cb.asset, lp, cb_id, cb.amount.int64))
        return rows

    def contract_events(self, op: int, op0: int) -> list[Row]:
        m = self.tx.meta
        if m.v == 4:
            events = m.v4.operations[op0].events if op0 < len(m.v4.operations) else []
            return [r for ev in events if (r := _operation_row(self.ctx, self.tx, op, ev)) is not None]
        if m.v != 3 or m.v3.soroban_meta is None or op0 != 0:
            return []
        return [r for ev in m.v3.soroban_meta.events if (r := self.v3_event(op, ev)) is not None]

    def v3_event(self, op: int, ev: xdr.ContractEvent) -> Row | None:
        """A SEP-41 event of meta v3 (admin topics present; SAC mint/burn still reported as transfers)."""
        if ev.type != _CONTRACT_EVENT or ev.contract_id is None or ev.body.v != 0:
            return None
        topics = ev.body.v0.topics
        fn = scval_symbol(topics[0]) if len(topics) >= 2 else None
        amount = scval_i128(ev.body.v0.data)
        if fn not in _SEP41_V3_TOPICS or amount is None:
            return None
        addrs = [scval_address(t) for t in topics[1:3]]
        if fn == "burn":
            if addrs[0] is None:
                return None
            frm, to = addrs[0], None
        elif len(topics) < 3 or None in addrs:
            return None
        elif fn == "transfer":
            frm, to = addrs
        elif fn == "mint":
            frm, to = None, addrs[1]
        else:
            frm, to = addrs[1], None
        cid = contract_strkey(ev.contract_id)
        asset = None
        if len(topics) == _SEP41_V3_TOPICS[fn]:
            name = scval_string(topics[-1])
            if name:
                asset = sac_asset(name, ev.contract_id.contract_id.hash, self.ctx.passphrase)
        if asset is not None and fn == "transfer":
            return self.move(op, asset, _base(frm), _base(to), amount)
        return self.ctx.row(self.tx, op, fn, frm, to, amount, _asset_columns(asset), cid)

    def operation(self, op0: int, op: xdr.Operation, result) -> list[Row]:
        n = op0 + 1
        t = op.body.type
        src, src_mux = _op_source(self.tx, op)
        tr = result.tr
        native = self.ctx.native
        if t == _OT.CREATE_ACCOUNT:
            b = op.body.create_account_op
            return [self.move(n, native, src, account_id(b.destination), b.starting_balance.int64, mux=True)]
        if t == _OT.ACCOUNT_MERGE:
            bal = tr.account_merge_result.source_account_balance
            if bal is None:
                return []
            to, to_mux = _account(op.body.destination)
            return [self.move(n, native, src, to, bal.int64, to_muxed=to_mux, mux=True)]
        if t == _OT.PAYMENT:
            b = op.body.payment_op
            to, to_mux = _account(b.destination)
            return [self.move(n, b.asset, src, to, b.amount.int64, to_muxed=to_mux, mux=True)]
        if t == _OT.CREATE_CLAIMABLE_BALANCE:
            b = op.body.create_claimable_balance_op
            cb = claimable_balance_id_strkey(tr.create_claimable_balance_result.balance_id)
            return [self.move(n, b.asset, src, cb, b.amount.int64)]
        if t == _OT.CLAIM_CLAIMABLE_BALANCE:
            cb = self.removed_claimable_balance(op0)
            cb_id = claimable_balance_id_strkey(op.body.claim_claimable_balance_op.balance_id)
            return [self.move(n, cb.asset, cb_id, src, cb.amount.int64, to_muxed=src_mux, mux=True)]
        if t == _OT.CLAWBACK:
            b = op.body.clawback_op
            return [self.event(n, "clawback", b.asset, b.amount.int64, frm=_account(b.from_)[0])]
        if t == _OT.CLAWBACK_CLAIMABLE_BALANCE:
            cb = self.removed_claimable_balance(op0)
            cb_id = claimable_balance_id_strkey(op.body.clawback_claimable_balance_op.balance_id)
            return [self.event(n, "clawback", cb.asset, cb.amount.int64, frm=cb_id)]
        if t in (_OT.ALLOW_TRUST, _OT.SET_TRUST_LINE_FLAGS):
            return self.revoked_trustline_events(n, op0)
        if t == _OT.LIQUIDITY_POOL_DEPOSIT:
            pool_id, a, b, da, db = self.single_pool(op0)
            if da <= 0 or db <= 0:
                raise DerivationError(
                    f"tx {self.tx.hash.hex()} op {n}: liquidity pool deposit of a non-positive amount"
                )
            lp = pool_id_strkey(pool_id)
            return [self.move(n, a, src, lp, da), self.move(n, b, src, lp, db)]
        if t == _OT.LIQUIDITY_POOL_WITHDRAW:
            pool_id, a, b, da, db = self.single_pool(op0)
            lp = pool_id_strkey(pool_id)
            return [self.move(n, a, lp, src, da, to_muxed=src_mux, mux=True),
                    self.move(n, b, lp, src, db, to_muxed=src_mux, mux=True)]
        if t == _OT.MANAGE_BUY_OFFER:
            return self.claim_atoms(n, src, tr.manage_buy_offer_result.success.offers_claimed)
        if t == _OT.MANAGE_SELL_OFFER:
            return self.claim_atoms(n, src, tr.manage_sell_offer_result.success.offers_claimed)
        if t == _OT.CREATE_PASSIVE_SELL_OFFER:
            return self.claim_atoms(n, src, tr.create_passive_sell_offer_result.success.offers_claimed)
        if t in (_OT.PATH_PAYMENT_STRICT_SEND, _OT.PATH_PAYMENT_STRICT_RECEIVE):
            send = t == _OT.PATH_PAYMENT_STRICT_SEND
            b = op.body.path_payment_strict_send_op if send else op.body.path_payment_strict_receive_op
            res = (tr.path_payment_strict_send_result if send else tr.path_payment_strict_receive_result).success
            to, to_mux = _account(b.destination)
            amount = res.last.amount.int64 if send else b.dest_amount.int64
            return self.claim_atoms(n, src, res.offers) + [
                self.move(n, b.dest_asset, src, to, amount, to_muxed=to_mux, mux=True)
            ]
        if t == _OT.INFLATION:
            return [self.event(n, "mint", native, p.amount.int64, to=account_id(p.destination))
                    for p in tr.inflation_result.payouts or []]
        if t == _OT.INVOKE_HOST_FUNCTION:
            return self.contract_events(n, op0)
        return []

    def reconcile_xlm(self, op0: int, op: xdr.Operation, rows: list[Row]) -> list[Row]:
        """Before protocol 8, fix the source's XLM delta with a mint or burn (CAP-67, retroactive events)."""
        src = _op_source(self.tx, op)[0]
        changed = 0
        for t, pre, post, _ in operation_changes(self.tx, op0):
            if t == _LT.ACCOUNT and account_id((post or pre).account.account_id) == src:
                changed += (post.account.balance.int64 if post else 0) - (pre.account.balance.int64 if pre else 0)
        evented = 0
        for r in rows:
            if r[_ASSET] != "native":
                continue
            amount = int(r[_AMOUNT_RAW])
            if r[_FROM] == src:
                evented -= amount
            if r[_TO] == src:
                evented += amount
        diff = changed - evented
        if diff > 0:
            return [self.event(op0 + 1, "mint", self.ctx.native, diff, to=src)] + rows
        if diff < 0:
            return rows + [self.event(op0 + 1, "burn", self.ctx.native, -diff, frm=src)]
        return rows

    def operations(self) -> list[Row]:
        tx = self.tx
        if not tx.successful:
            return []
        results = tx.operation_results
        rows: list[Row] = []
        for op0, op in enumerate(tx.operations):
            op_rows = self.operation(op0, op, results[op0])
            if self.ctx.ledger.protocol_version < 8:
                op_rows = self.reconcile_xlm(op0, op, op_rows)
            rows.extend(op_rows)
        return rows


def _base(address: str) -> str:
    """G... of an M... address (other strkeys unchanged)."""
    if address.startswith("M"):
        return strkey("G", StrKey.decode_med25519_public_key(address)[:32])
    return address


# --- verification: events against ledger balance changes (Go's VerifyEvents) ------------------------------


def _add(deltas: dict, holder: str, asset: str, amount: int) -> None:
    if not holder.startswith("C"):  # contract balances live in contract data: not verifiable here
        deltas[(holder, asset)] = deltas.get((holder, asset), 0) + amount


def _canonical(asset: xdr.Asset) -> str:
    t, code, issuer = asset_parts(asset)
    return "native" if t == "native" else f"{code}:{issuer}"


def _trustline_asset(asset: xdr.TrustLineAsset) -> str | None:
    if asset.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
        return None
    a = asset.alpha_num4 or asset.alpha_num12
    code = a.asset_code.asset_code4 if asset.alpha_num4 else a.asset_code.asset_code12
    name = code.rstrip(b"\x00").decode("utf-8", "replace")
    return f"{name}:{account_id(a.issuer)}"


_ACCOUNT = _LT.ACCOUNT


def _change_deltas(changes, deltas: dict) -> None:
    for t, pre, post in changes:
        if t == _ACCOUNT:  # the common case, inlined: holders here are G... keys, never contracts
            e = (post or pre).account
            d = (post.account.balance.int64 if post else 0) - (pre.account.balance.int64 if pre else 0)
            key = (account_id(e.account_id), "native")
            deltas[key] = deltas.get(key, 0) + d
        elif t == _LT.TRUSTLINE:
            e = (post or pre).trust_line
            asset = _trustline_asset(e.asset)
            if asset is not None:
                d = (post.trust_line.balance.int64 if post else 0) - (pre.trust_line.balance.int64 if pre else 0)
                _add(deltas, account_id(e.account_id), asset, d)
        elif t == _LT.CLAIMABLE_BALANCE:
            e = (post or pre).claimable_balance
            d = (post.claimable_balance.amount.int64 if post else 0) - (pre.claimable_balance.amount.int64 if pre else 0)
            _add(deltas, claimable_balance_id_strkey(e.balance_id), _canonical(e.asset), d)
        elif t == _LT.LIQUIDITY_POOL:
            e = (post or pre).liquidity_pool
            params = e.body.constant_product.params
            lp = pool_id_strkey(e.liquidity_pool_id)
            for side, asset in (("reserve_a", params.asset_a), ("reserve_b", params.asset_b)):
                after = getattr(post.liquidity_pool.body.constant_product, side).int64 if post else 0
                before = getattr(pre.liquidity_pool.body.constant_product, side).int64 if pre else 0
                _add(deltas, lp, _canonical(asset), after - before)


def _event_deltas(rows: list[Row], deltas: dict, sign: int = 1) -> None:
    """Add the balance changes that ``rows`` claim, times ``sign``, to ``deltas``."""
    for r in rows:
        asset = r[_ASSET]
        if not asset:
            continue  # custom (non-SAC) tokens
        asset = "native" if asset == "native" else asset.split(":", 1)[1]
        amount = int(r[_AMOUNT_RAW]) * sign
        if r[_TOPIC] == "fee":
            _add(deltas, r[_FROM], asset, -amount)
            continue
        if r[_FROM]:
            _add(deltas, r[_FROM], asset, -amount)
        if r[_TO]:
            _add(deltas, r[_TO], asset, amount)


_BALANCE_TYPES = frozenset((_LT.ACCOUNT, _LT.TRUSTLINE, _LT.CLAIMABLE_BALANCE, _LT.LIQUIDITY_POOL))
_LCT_CREATED, _LCT_UPDATED, _LCT_REMOVED, _LCT_STATE, _LCT_RESTORED = (
    _CT.LEDGER_ENTRY_CREATED, _CT.LEDGER_ENTRY_UPDATED, _CT.LEDGER_ENTRY_REMOVED, _CT.LEDGER_ENTRY_STATE,
    _CT.LEDGER_ENTRY_RESTORED,
)


def _balance_changes(group):
    """``(entry type, pre data, post data)`` of the balance-holding entries (accounts, trustlines, claimable
    balances, pools) a ``LedgerEntryChanges`` group changes, paired as :func:`changes_from` pairs them
    (STATE folded into the next change's pre-state) but unsorted: the deltas they feed are sums."""
    raw = group.ledger_entry_changes
    for i, c in enumerate(raw):
        t = c.type
        if t == _LCT_CREATED or t == _LCT_RESTORED:
            data = (c.created if t == _LCT_CREATED else c.restored).data
            if data.type in _BALANCE_TYPES:
                yield data.type, None, data
        elif t == _LCT_UPDATED or t == _LCT_REMOVED:
            prev = raw[i - 1]
            pre = (prev.state if prev.type == _LCT_STATE else prev.restored).data
            if pre.type in _BALANCE_TYPES:
                yield pre.type, pre, c.updated.data if t == _LCT_UPDATED else None


_META_BODY = {1: "v1", 2: "v2", 3: "v3", 4: "v4"}


def _change_groups(tx: Transaction) -> list:
    """A transaction's ``LedgerEntryChanges``: fee, before, operations, after, post-apply fee groups."""
    m = tx.meta
    if m.v == 0:
        groups = [tx.fee_changes, *[om.changes for om in tx.operation_meta()]]
    else:
        body = getattr(m, _META_BODY[m.v])
        groups = [tx.fee_changes, body.tx_changes if m.v == 1 else body.tx_changes_before,
                  *[om.changes for om in tx.operation_meta()], getattr(body, "tx_changes_after", None)]
    groups.append(tx.post_apply_fee_changes)
    return [g for g in groups if g is not None]


_HOLDER_PREFIX = {_LT.ACCOUNT.value: "G", _LT.TRUSTLINE.value: "G", _LT.CLAIMABLE_BALANCE.value: "B",
                  _LT.LIQUIDITY_POOL.value: "L"}


@functools.lru_cache(maxsize=4096)
def _asset_xdr_canonical(raw: bytes | None) -> str:
    """``native`` or ``CODE:ISSUER`` of an ``Asset`` / ``TrustLineAsset`` XDR (None: an account's lumens)."""
    if raw is None or raw[3] == 0:
        return "native"
    code, issuer = (raw[4:8], raw[12:44]) if raw[3] == 1 else (raw[4:16], raw[20:52])
    return f"{code.rstrip(bytes(1)).decode('utf-8', 'replace')}:{strkey('G', issuer)}"


@functools.lru_cache(maxsize=1 << 15)
def _change_key(entry_type: int, holder: bytes, asset: bytes | None) -> tuple[str, str]:
    """``(holder strkey, canonical asset)`` of a ``fast.balance_changes`` contribution."""
    return strkey(_HOLDER_PREFIX[entry_type], holder), _asset_xdr_canonical(asset)


def _groups_deltas(groups: list, deltas: dict) -> None:
    """Add the balance changes of a transaction's ``LedgerEntryChanges`` groups to ``deltas``: scanned in C in
    one call from the raw XDR of fast-engine values (the groups of one transaction come from one decode), walked
    in Python for stellar-sdk ones."""
    if not groups or raw_xdr(groups[0]) is None:
        for group in groups:
            _change_deltas(_balance_changes(group), deltas)
        return
    for t, holder, asset, amount in fast.balance_changes(groups):
        key = _change_key(t, holder, asset)
        deltas[key] = deltas.get(key, 0) + amount


def _change_deltas_of(tx: Transaction) -> dict:
    """``{(holder, asset): amount}`` of the balance changes in a transaction's ledger change groups."""
    deltas: dict = {}
    _groups_deltas(_change_groups(tx), deltas)
    return deltas


def _verify_transaction(ledger: Ledger, tx: Transaction, rows: list[Row]) -> None:
    """Raise :class:`TokenTransferMismatchError` unless ``rows``, the events of ``tx`` (fees included), add
    up to the balance changes in its fee, transaction and operation ledger changes."""
    deltas = _change_deltas_of(tx)
    _event_deltas(rows, deltas, -1)
    if any(deltas.values()):
        from_changes = {k: v for k, v in _change_deltas_of(tx).items() if v}
        from_events: dict = {}
        _event_deltas(rows, from_events)
        from_events = {k: v for k, v in from_events.items() if v}
        diff = {k: (from_events.get(k, 0), from_changes.get(k, 0))
                for k in from_changes.keys() | from_events.keys() if from_events.get(k, 0) != from_changes.get(k, 0)}
        raise TokenTransferMismatchError(
            f"ledger {ledger.sequence} tx {tx.hash.hex()}: token transfer events do not match ledger balance "
            f"changes; (holder, asset): (events, changes) = {diff}"
        )


def verify_token_transfers(ledger: Ledger, rows: list[dict]) -> None:
    """Raise :class:`TokenTransferMismatchError` unless every transaction's events (fees included) add up
    to the balance changes in its fee, transaction and operation ledger changes."""
    by_tx: dict[str, list[Row]] = {}
    for r in rows:
        by_tx.setdefault(r["transaction_hash"], []).append(_as_row(r))
    for tx in ledger.transactions:
        _verify_transaction(ledger, tx, by_tx.get(tx.hash.hex(), []))
