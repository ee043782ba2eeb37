"""Ledger entry change tables: ``accounts``, ``trustlines``, ``offers``, ``liquidity_pools``,
``claimable_balances``, ``contract_data`` and ``ttl``.

Each row is one change of one ledger entry, read from the ledger's meta in the order of Go's
``ingest.LedgerChangeReader``: fee charges of every transaction, then each transaction's meta (changes
before, per operation, after), then post-apply fee refunds and protocol upgrades; changes within one group
are ordered by ledger key. A change carries its cause (``reason``, transaction, operation). Entry fields
follow stellar-etl's ``account.go``, ``trustline.go``, ``offer.go``, ``liquidity_pool.go``,
``claimable_balance.go``, ``contract_data.go`` and ``ttl.go``.

With ``compact: true`` the changes of a ledger are merged per entry as stellar-etl's
``export_ledger_entry_changes`` does (Go's ``ChangeCompactor``): one row per entry and ledger holding its
net change, without transaction context; ``accounts`` then skips signer-only changes, as stellar-etl does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import weakref
from dataclasses import dataclass, replace
from typing import Callable

import pyarrow as pa
from pydantic import Field
from stellar_sdk import xdr

from cdp_ray.errors import LedgerIntegrityError
from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import (
    TIMESTAMP,
    account_id,
    asset_id,
    asset_parts,
    claimable_balance_id_hex,
    claimable_balance_id_strkey,
    contract_strkey,
    go_enum_string,
    ledger_key_xdr,
    pool_id_hex,
    pool_id_strkey,
    signer_sponsors,
    signer_summary,
    sponsoring_id,
    stroops_to_real,
    toid,
)
from cdp_ray.processors.filters import FilterConfig, apply_where
from cdp_ray.processors.operation_details import claim_predicate_json
from cdp_ray.processors.scval import sac_contract_id, scval_to_json, to_json
from cdp_ray.xdr import Ledger, Transaction

LET = xdr.LedgerEntryType
LCT = xdr.LedgerEntryChangeType
_CHANGE_NAMES = {0: "created", 1: "updated", 2: "removed", 3: "state", 4: "restored"}


class EntryChangesConfig(FilterConfig):
    """Options shared by the ledger entry change tables (``where`` drops upgrade changes, which have no
    transaction)."""

    compact: bool = Field(
        False,
        description="Merge each entry's changes within a ledger into one net change (stellar-etl's "
        "export_ledger_entry_changes); rows then have no transaction/operation context.",
    )


# --- reading the changes --------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryChange:
    """One ledger entry change (Go ``ingest.Change``) with its cause."""

    entry_type: xdr.LedgerEntryType
    change_type: int
    pre: xdr.LedgerEntry | None
    post: xdr.LedgerEntry | None
    reason: str | None = None
    transaction: Transaction | None = None
    operation_index: int | None = None

    @property
    def entry(self) -> xdr.LedgerEntry:
        """The entry's state after the change, or before it when removed (stellar-etl ``ExtractEntryFromChange``)."""
        return self.pre if self.post is None else self.post

    @property
    def key(self) -> bytes:
        return ledger_key_xdr(self.entry.data)


def changes_from(group: xdr.LedgerEntryChanges | None, **context) -> list[EntryChange]:
    """Go ``GetChangesFromLedgerEntryChanges``: fold STATE entries into the next change's pre-state and
    order the group by ledger key (stable)."""
    if group is None:
        return []
    raw = group.ledger_entry_changes
    out = []
    for i, c in enumerate(raw):
        t = c.type
        if t == LCT.LEDGER_ENTRY_CREATED:
            out.append(EntryChange(c.created.data.type, t.value, None, c.created, **context))
        elif t == LCT.LEDGER_ENTRY_RESTORED:
            out.append(EntryChange(c.restored.data.type, t.value, None, c.restored, **context))
        elif t in (LCT.LEDGER_ENTRY_UPDATED, LCT.LEDGER_ENTRY_REMOVED):
            prev = raw[i - 1]
            pre = prev.state if prev.type == LCT.LEDGER_ENTRY_STATE else prev.restored
            post = c.updated if t == LCT.LEDGER_ENTRY_UPDATED else None
            out.append(EntryChange(pre.data.type, t.value, pre, post, **context))
    out.sort(key=lambda ch: ch.key)
    return out


def _meta_groups(t: Transaction, protocol: int) -> list[tuple[xdr.LedgerEntryChanges, str, int | None]]:
    m = t.meta
    if m.v == 0:
        return [(op.changes, "operation", i) for i, op in enumerate(m.operations)]
    body = {1: m.v1, 2: m.v2, 3: m.v3, 4: m.v4}[m.v]
    before = body.tx_changes if m.v == 1 else body.tx_changes_before
    groups = [(before, "transaction", None)]
    if protocol <= 12 and t.result_code == xdr.TransactionResultCode.txINTERNAL_ERROR:
        return groups
    groups += [(op.changes, "operation", i) for i, op in enumerate(body.operations or [])]
    if m.v >= 2:
        groups.append((body.tx_changes_after, "transaction", None))
    return groups


def ledger_entry_changes(ledger: Ledger) -> list[EntryChange]:
    """Every ledger entry change of ``ledger``, in Go ``LedgerChangeReader`` order."""
    out: list[EntryChange] = []
    for t in ledger.transactions:
        out += changes_from(t.fee_changes, reason="fee", transaction=t)
    for t in ledger.transactions:
        for group, reason, op_index in _meta_groups(t, ledger.protocol_version):
            out += changes_from(group, reason=reason, transaction=t, operation_index=op_index)
    for t in ledger.transactions:
        out += changes_from(t.post_apply_fee_changes, reason="fee_refund", transaction=t)
    upgrades = ledger.body.upgrades_processing if ledger.lcm is not None else None
    for upgrade in upgrades or []:
        out += changes_from(upgrade.changes, reason="upgrade")
    return out


def _ttl_max(a: xdr.LedgerEntry, b: xdr.LedgerEntry) -> xdr.LedgerEntry:
    """``b`` carrying the later of the two TTLs (Go compactor's ``maxTTL``)."""
    if a.data.ttl.live_until_ledger_seq.uint32 <= b.data.ttl.live_until_ledger_seq.uint32:
        return b
    merged = xdr.LedgerEntry.from_xdr_bytes(b.to_xdr_bytes())
    merged.data.ttl = a.data.ttl
    return merged


def compact_changes(changes: list[EntryChange], sequence: int) -> list[EntryChange]:
    """Go ``ChangeCompactor`` over one ledger: one net change per entry, ordered by ledger key."""
    cache: dict[bytes, EntryChange] = {}
    C, U, R, S = (
        LCT.LEDGER_ENTRY_CREATED.value,
        LCT.LEDGER_ENTRY_UPDATED.value,
        LCT.LEDGER_ENTRY_REMOVED.value,
        LCT.LEDGER_ENTRY_RESTORED.value,
    )

    def conflict(what: str, key: bytes) -> LedgerIntegrityError:
        return LedgerIntegrityError(
            f"ledger {sequence}: can't {what} (ledger key {base64.b64encode(key).decode()})", sequence=sequence
        )

    for ch in changes:
        ch = replace(ch, reason=None, transaction=None, operation_index=None)
        key = ch.key
        ex = cache.get(key)
        if ex is None:
            cache[key] = ch
        elif ch.change_type == C:
            if ex.change_type != R:
                raise conflict("create an entry that already exists", key)
            cache[key] = replace(ch, pre=ex.pre, change_type=U)
        elif ch.change_type == U:
            if ex.change_type == R:
                raise conflict("update an entry that was previously removed", key)
            post = _ttl_max(ex.post, ch.post) if ch.entry_type == LET.TTL else ch.post
            cache[key] = replace(ch, pre=ex.pre, post=post, change_type=ex.change_type)
        elif ch.change_type == R:
            if ex.change_type == C:
                del cache[key]
            elif ex.change_type == U:
                cache[key] = replace(ch, pre=ex.pre)
            elif ex.change_type == S:
                cache[key] = ch
            else:
                raise conflict("remove an entry that was previously removed", key)
        else:
            raise conflict("restore an entry that is already active", key)
    return [cache[k] for k in sorted(cache)]


_CACHE: dict[int, tuple[weakref.ref, list[EntryChange]]] = {}


def _all_changes(ledger: Ledger) -> list[EntryChange]:
    """:func:`ledger_entry_changes`, computed once per decoded ledger for all the entry tables."""
    hit = _CACHE.get(id(ledger))
    if hit is not None and hit[0]() is ledger:
        return hit[1]
    changes = ledger_entry_changes(ledger)
    key = id(ledger)
    _CACHE[key] = (weakref.ref(ledger, lambda _r: _CACHE.pop(key, None)), changes)
    return changes


def indexed_changes(ledger: Ledger) -> list[tuple[int, EntryChange]]:
    """``(position in the ledger's change stream, change)`` pairs. For a filtered view of a ledger (see
    :mod:`cdp_ray.processors.filters`) only the changes of its transactions, at their full-ledger positions."""
    full = getattr(ledger, "unfiltered", ledger)
    changes = list(enumerate(_all_changes(full)))
    if full is ledger:
        return changes
    keep = {id(t) for t in ledger.transactions}
    return [(i, c) for i, c in changes if c.transaction is not None and id(c.transaction) in keep]


# --- common columns --------------------------------------------------------------------------------


def _context_columns(sponsor: bool) -> list[pa.Field]:
    cols = [
        col("last_modified_ledger", pa.uint32(), "ledger that last modified the entry", nullable=False),
        col("ledger_entry_change", pa.uint32(), "0 created, 1 updated, 2 removed, 4 restored", nullable=False),
        col("change_type", pa.string(), "created, updated, removed or restored", nullable=False),
        col("deleted", pa.bool_(), "true when the entry was removed (fields then hold its last state)", nullable=False),
    ]
    if sponsor:
        cols.append(col("sponsor", pa.string(), "G... account sponsoring the entry's reserve"))
    return cols + [
        col("ledger_sequence", pa.uint32(), "ledger in which the change happened", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
        col(
            "change_index",
            pa.int32(),
            "position of the change among all entry changes of the ledger (compacted: among this table's net changes)",
            nullable=False,
        ),
        col("reason", pa.string(), "fee, transaction, operation, fee_refund or upgrade; null when compacted"),
        col("transaction_hash", pa.string(), "hex hash of the transaction that caused the change"),
        col("transaction_id", pa.int64(), "TOID of that transaction"),
        col("operation_id", pa.int64(), "TOID of the operation that caused the change (reason operation)"),
    ]


def _context(ledger: Ledger, ch: EntryChange, index: int, sponsor: bool) -> dict:
    t = ch.transaction
    entry = ch.entry
    row = {
        "last_modified_ledger": entry.last_modified_ledger_seq.uint32,
        "ledger_entry_change": ch.change_type,
        "change_type": _CHANGE_NAMES[ch.change_type],
        "deleted": ch.post is None,
        "ledger_sequence": ledger.sequence,
        "closed_at": ledger.closed_at,
        "change_index": index,
        "reason": ch.reason,
        "transaction_hash": t.hash.hex() if t is not None else None,
        "transaction_id": toid(ledger.sequence, t.index) if t is not None else None,
        "operation_id": toid(ledger.sequence, t.index, ch.operation_index + 1)
        if ch.operation_index is not None
        else None,
    }
    if sponsor:
        row["sponsor"] = sponsoring_id(entry)
    return row


def _table(
    entry_type: xdr.LedgerEntryType,
    to_row: Callable[[xdr.LedgerEntry, Ledger], dict | None],
    sponsor: bool,
    keep: Callable[[EntryChange], bool] | None = None,
) -> Callable[[list[Ledger], EntryChangesConfig], list[dict]]:
    def run(batch: list[Ledger], config: EntryChangesConfig) -> list[dict]:
        rows = []
        for ledger in apply_where(batch, config):
            changes = indexed_changes(ledger)
            if config.compact:
                net = compact_changes([c for _, c in changes if c.entry_type == entry_type], ledger.sequence)
                changes = [(i, c) for i, c in enumerate(net) if keep is None or keep(c)]
            for index, ch in changes:
                if ch.entry_type != entry_type:
                    continue
                fields = to_row(ch.entry, ledger)
                if fields is not None:
                    rows.append({**fields, **_context(ledger, ch, index, sponsor)})
        return rows

    return run


def _asset_columns(prefix: str, what: str) -> list[pa.Field]:
    return [
        col(f"{prefix}asset_type", pa.string(), f"type of the {what}: native, credit_alphanum4 or credit_alphanum12"),
        col(f"{prefix}asset_code", pa.string(), f"code of the {what} (empty if native)"),
        col(f"{prefix}asset_issuer", pa.string(), f"G... issuer of the {what} (empty if native)"),
        col(f"{prefix}asset_id", pa.int64(), f"FarmHash asset id of the {what}"),
    ]


def _asset_fields(prefix: str, asset) -> dict:
    t, code, issuer = asset_parts(asset)
    return {
        f"{prefix}asset_type": t,
        f"{prefix}asset_code": code,
        f"{prefix}asset_issuer": issuer,
        f"{prefix}asset_id": asset_id(code, issuer, t),
    }


_DESCRIPTION_TAIL = (
    " One row per change (created/updated/removed/restored) with its cause (fee, transaction, operation, "
    "fee_refund, upgrade); config compact=true gives stellar-etl's one net change per entry and ledger."
)

# --- accounts ------------------------------------------------------------------------------------------

ACCOUNTS_SCHEMA = pa.schema(
    [
        col("account_id", pa.string(), "G... account", nullable=False),
        col("balance", pa.float64(), "XLM balance, in units"),
        col("buying_liabilities", pa.float64(), "XLM buying liabilities, in units"),
        col("selling_liabilities", pa.float64(), "XLM selling liabilities, in units"),
        col("sequence_number", pa.int64(), "sequence number"),
        col("sequence_ledger", pa.int64(), "ledger of the last sequence bump (0 if unknown)"),
        col("sequence_time", pa.int64(), "close time of the last sequence bump (0 if unknown)"),
        col("num_subentries", pa.uint32(), "number of sub-entries"),
        col("inflation_destination", pa.string(), "G... inflation destination, empty if none"),
        col("flags", pa.uint32(), "account flags bit mask"),
        col("home_domain", pa.string(), "home domain"),
        col("master_weight", pa.int32(), "master key weight"),
        col("threshold_low", pa.int32(), "low threshold"),
        col("threshold_medium", pa.int32(), "medium threshold"),
        col("threshold_high", pa.int32(), "high threshold"),
        col("num_sponsored", pa.uint32(), "reserves sponsored for this account"),
        col("num_sponsoring", pa.uint32(), "reserves this account sponsors"),
        *_context_columns(sponsor=True),
    ]
)


def account_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    a = entry.data.account
    buying = selling = 0
    num_sponsored = num_sponsoring = seq_ledger = seq_time = 0
    if a.ext.v == 1:
        v1 = a.ext.v1
        buying, selling = v1.liabilities.buying.int64, v1.liabilities.selling.int64
        if v1.ext.v == 2:
            v2 = v1.ext.v2
            num_sponsored, num_sponsoring = v2.num_sponsored.uint32, v2.num_sponsoring.uint32
            if v2.ext.v == 3:
                seq_ledger, seq_time = v2.ext.v3.seq_ledger.uint32, v2.ext.v3.seq_time.time_point.uint64
    th = a.thresholds.thresholds
    return {
        "account_id": account_id(a.account_id),
        "balance": stroops_to_real(a.balance.int64),
        "buying_liabilities": stroops_to_real(buying),
        "selling_liabilities": stroops_to_real(selling),
        "sequence_number": a.seq_num.sequence_number.int64,
        "sequence_ledger": seq_ledger,
        "sequence_time": seq_time,
        "num_subentries": a.num_sub_entries.uint32,
        "inflation_destination": account_id(a.inflation_dest) if a.inflation_dest is not None else "",
        "flags": a.flags.uint32,
        "home_domain": a.home_domain.string32.decode("utf-8", "replace"),
        "master_weight": th[0],
        "threshold_low": th[1],
        "threshold_medium": th[2],
        "threshold_high": th[3],
        "num_sponsored": num_sponsored,
        "num_sponsoring": num_sponsoring,
    }


def _account_without_signers(entry: xdr.LedgerEntry) -> bytes:
    a = xdr.AccountEntry.from_xdr_bytes(entry.data.account.to_xdr_bytes())
    a.signers = []
    if a.ext.v == 0:
        zero = xdr.Liabilities(xdr.Int64(0), xdr.Int64(0))
        a.ext = xdr.AccountEntryExt(1, xdr.AccountEntryExtensionV1(zero, xdr.AccountEntryExtensionV1Ext(0)))
    return a.to_xdr_bytes()


def account_changed_except_signers(ch: EntryChange) -> bool:
    """Go ``Change.AccountChangedExceptSigners``: false when only the signers changed."""
    if ch.pre is None or ch.post is None:
        return True
    if ch.pre.last_modified_ledger_seq.uint32 != ch.post.last_modified_ledger_seq.uint32:
        return True
    return _account_without_signers(ch.pre) != _account_without_signers(ch.post)


processor(
    "accounts",
    schema=ACCOUNTS_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Account entry changes (stellar-etl accounts): balance and liabilities (float units), sequence, "
    "flags, thresholds, home domain, sponsorship counts." + _DESCRIPTION_TAIL,
    tags=("entries", "accounts"),
)(_table(LET.ACCOUNT, account_fields, sponsor=True, keep=account_changed_except_signers))

# --- trustlines ----------------------------------------------------------------------------------------

TRUSTLINES_SCHEMA = pa.schema(
    [
        col("ledger_key", pa.string(), "base64 LedgerKey XDR of the trustline", nullable=False),
        col("account_id", pa.string(), "G... trustor", nullable=False),
        col("asset_type", pa.string(), "credit_alphanum4, credit_alphanum12 or pool_share"),
        col("asset_code", pa.string(), "asset code (empty for pool shares)"),
        col("asset_issuer", pa.string(), "G... issuer (empty for pool shares)"),
        col("asset_id", pa.int64(), "stellar-etl asset id (FarmHash of code, issuer and Go's asset type name)"),
        col("balance", pa.float64(), "balance, in units"),
        col("trust_line_limit", pa.int64(), "limit, in stroops"),
        col("liquidity_pool_id", pa.string(), "hex pool id for pool-share trustlines, else empty"),
        col("liquidity_pool_id_strkey", pa.string(), "L... pool id for pool-share trustlines, else empty"),
        col("buying_liabilities", pa.float64(), "buying liabilities, in units"),
        col("selling_liabilities", pa.float64(), "selling liabilities, in units"),
        col("flags", pa.uint32(), "trustline flags bit mask"),
        *_context_columns(sponsor=True),
    ]
)


def trustline_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    tl = entry.data.trust_line
    key = xdr.LedgerKey(LET.TRUSTLINE, trust_line=xdr.LedgerKeyTrustLine(tl.account_id, tl.asset))
    if tl.asset.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
        kind, code, issuer = "pool_share", "", ""
        pool_hex, pool_strkey = pool_id_hex(tl.asset.liquidity_pool_id), pool_id_strkey(tl.asset.liquidity_pool_id)
    else:
        kind, code, issuer = asset_parts(tl.asset)
        pool_hex = pool_strkey = ""
    buying = selling = 0
    if tl.ext.v == 1:
        buying, selling = tl.ext.v1.liabilities.buying.int64, tl.ext.v1.liabilities.selling.int64
    return {
        "ledger_key": base64.b64encode(key.to_xdr_bytes()).decode(),
        "account_id": account_id(tl.account_id),
        "asset_type": kind,
        "asset_code": code,
        "asset_issuer": issuer,
        # stellar-etl hashes Go's enum name here (e.g. AssetTypeAssetTypeCreditAlphanum4), unlike elsewhere.
        "asset_id": asset_id(code, issuer, go_enum_string(tl.asset.type)),
        "balance": stroops_to_real(tl.balance.int64),
        "trust_line_limit": tl.limit.int64,
        "liquidity_pool_id": pool_hex,
        "liquidity_pool_id_strkey": pool_strkey,
        "buying_liabilities": stroops_to_real(buying),
        "selling_liabilities": stroops_to_real(selling),
        "flags": tl.flags.uint32,
    }


processor(
    "trustlines",
    schema=TRUSTLINES_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Trustline entry changes (stellar-etl trust_lines): asset or pool share, balance, limit, "
    "liabilities, flags." + _DESCRIPTION_TAIL,
    tags=("entries", "trustlines"),
)(_table(LET.TRUSTLINE, trustline_fields, sponsor=True))

# --- offers ----------------------------------------------------------------------------------------------

OFFERS_SCHEMA = pa.schema(
    [
        col("seller_id", pa.string(), "G... offer owner", nullable=False),
        col("offer_id", pa.int64(), "offer id", nullable=False),
        *_asset_columns("selling_", "asset offered"),
        *_asset_columns("buying_", "asset wanted"),
        col("amount", pa.float64(), "amount of the selling asset offered, in units"),
        col("pricen", pa.int32(), "price numerator"),
        col("priced", pa.int32(), "price denominator"),
        col("price", pa.float64(), "price n/d as float"),
        col("flags", pa.uint32(), "offer flags (1 = passive)"),
        *_context_columns(sponsor=True),
    ]
)


def offer_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    o = entry.data.offer
    n, d = o.price.n.int32, o.price.d.int32
    return {
        "seller_id": account_id(o.seller_id),
        "offer_id": o.offer_id.int64,
        **_asset_fields("selling_", o.selling),
        **_asset_fields("buying_", o.buying),
        "amount": stroops_to_real(o.amount.int64),
        "pricen": n,
        "priced": d,
        "price": n / d if n > 0 else 0.0,
        "flags": o.flags.uint32,
    }


processor(
    "offers",
    schema=OFFERS_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Order book offer entry changes (stellar-etl offers): assets, amount, price." + _DESCRIPTION_TAIL,
    tags=("entries", "dex"),
)(_table(LET.OFFER, offer_fields, sponsor=True))

# --- liquidity pools ---------------------------------------------------------------------------------

LIQUIDITY_POOLS_SCHEMA = pa.schema(
    [
        col("liquidity_pool_id", pa.string(), "hex pool id", nullable=False),
        col("liquidity_pool_id_strkey", pa.string(), "L... pool id"),
        col("type", pa.string(), "pool type (constant_product)"),
        col("fee", pa.uint32(), "fee in basis points"),
        col("trustline_count", pa.uint64(), "pool share trustlines"),
        col("pool_share_count", pa.float64(), "total pool shares, in units"),
        col("asset_a_type", pa.string(), "type of reserve asset A"),
        col("asset_a_code", pa.string(), "code of asset A (empty if native)"),
        col("asset_a_issuer", pa.string(), "issuer of asset A (empty if native)"),
        col("asset_a_id", pa.int64(), "FarmHash asset id of asset A"),
        col("asset_a_amount", pa.float64(), "reserve of asset A, in units"),
        col("asset_b_type", pa.string(), "type of reserve asset B"),
        col("asset_b_code", pa.string(), "code of asset B (empty if native)"),
        col("asset_b_issuer", pa.string(), "issuer of asset B (empty if native)"),
        col("asset_b_id", pa.int64(), "FarmHash asset id of asset B"),
        col("asset_b_amount", pa.float64(), "reserve of asset B, in units"),
        *_context_columns(sponsor=False),
    ]
)


def liquidity_pool_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    lp = entry.data.liquidity_pool
    cp = lp.body.constant_product
    row = {
        "liquidity_pool_id": pool_id_hex(lp.liquidity_pool_id),
        "liquidity_pool_id_strkey": pool_id_strkey(lp.liquidity_pool_id),
        "type": "constant_product",
        "fee": cp.params.fee.int32,
        "trustline_count": cp.pool_shares_trust_line_count.int64,
        "pool_share_count": stroops_to_real(cp.total_pool_shares.int64),
        "asset_a_amount": stroops_to_real(cp.reserve_a.int64),
        "asset_b_amount": stroops_to_real(cp.reserve_b.int64),
    }
    for prefix, asset in (("asset_a_", cp.params.asset_a), ("asset_b_", cp.params.asset_b)):
        t, code, issuer = asset_parts(asset)
        row.update(
            {
                f"{prefix}type": t,
                f"{prefix}code": code,
                f"{prefix}issuer": issuer,
                f"{prefix}id": asset_id(code, issuer, t),
            }
        )
    return row


processor(
    "liquidity_pools",
    schema=LIQUIDITY_POOLS_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Liquidity pool entry changes (stellar-etl liquidity_pools): assets, reserves, shares, fee."
    + _DESCRIPTION_TAIL,
    tags=("entries", "dex"),
)(_table(LET.LIQUIDITY_POOL, liquidity_pool_fields, sponsor=False))

# --- claimable balances ------------------------------------------------------------------------------

CLAIMABLE_BALANCES_SCHEMA = pa.schema(
    [
        col("balance_id", pa.string(), "hex ClaimableBalanceID XDR", nullable=False),
        col("balance_id_strkey", pa.string(), "B... balance id"),
        col("claimants", pa.string(), 'JSON array of {"destination", "predicate"} (Horizon predicate JSON)'),
        *_asset_columns("", "balance's asset"),
        col("asset_amount", pa.float64(), "amount, in units"),
        col("flags", pa.uint32(), "claimable balance flags (1 = clawback enabled)"),
        *_context_columns(sponsor=True),
    ]
)


def claimable_balance_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    cb = entry.data.claimable_balance
    claimants = [
        {"destination": account_id(c.v0.destination), "predicate": claim_predicate_json(c.v0.predicate)}
        for c in cb.claimants
    ]
    return {
        "balance_id": claimable_balance_id_hex(cb.balance_id),
        "balance_id_strkey": claimable_balance_id_strkey(cb.balance_id),
        "claimants": json.dumps(claimants, separators=(",", ":")),
        **_asset_fields("", cb.asset),
        "asset_amount": stroops_to_real(cb.amount.int64),
        "flags": cb.ext.v1.flags.uint32 if cb.ext.v == 1 else 0,
    }


processor(
    "claimable_balances",
    schema=CLAIMABLE_BALANCES_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Claimable balance entry changes (stellar-etl claimable_balances): asset, amount, claimants "
    "with predicates, flags." + _DESCRIPTION_TAIL,
    tags=("entries", "claimable_balances"),
)(_table(LET.CLAIMABLE_BALANCE, claimable_balance_fields, sponsor=True))

# --- contract data -----------------------------------------------------------------------------------

CONTRACT_DATA_SCHEMA = pa.schema(
    [
        col("contract_id", pa.string(), "C... contract owning the entry", nullable=False),
        col("contract_key_type", pa.string(), "Go name of the key's SCVal type, e.g. ScValTypeScvVec"),
        col("contract_durability", pa.string(), "ContractDataDurabilityPersistent or ...Temporary"),
        col("asset_code", pa.string(), "Stellar Asset Contract instances: asset code"),
        col("asset_issuer", pa.string(), "Stellar Asset Contract instances: asset issuer"),
        col("asset_type", pa.string(), "Stellar Asset Contract instances: asset type"),
        col("balance_holder", pa.string(), "SAC balance entries held by a contract: C... holder"),
        col("balance", pa.string(), "SAC balance entries held by a contract: amount in stroops (decimal string)"),
        col("ledger_key_hash", pa.string(), "hex sha256 of the entry's LedgerKey XDR"),
        col("ledger_key_hash_base_64", pa.string(), "base64 LedgerKey XDR (stellar-etl's name)"),
        col("key", pa.string(), "base64 SCVal XDR of the key"),
        col("key_decoded", pa.string(), "JSON of the key (stellar-xdr-json form)"),
        col("val", pa.string(), "base64 SCVal XDR of the value"),
        col("val_decoded", pa.string(), "JSON of the value (stellar-xdr-json form)"),
        col("contract_data_xdr", pa.string(), "base64 ContractDataEntry XDR"),
        *_context_columns(sponsor=False),
    ]
)

_SYM = xdr.SCValType


def _sym(v: xdr.SCVal) -> bytes | None:
    return v.sym.sc_symbol if v.type == _SYM.SCV_SYMBOL else None


def contract_data_asset(cd: xdr.ContractDataEntry, passphrase: str | None) -> xdr.Asset | None:
    """stellar-etl ``AssetFromContractData``: the asset of a Stellar Asset Contract's instance entry."""
    if (
        passphrase is None
        or cd.key.type != _SYM.SCV_LEDGER_KEY_CONTRACT_INSTANCE
        or cd.val.type != _SYM.SCV_CONTRACT_INSTANCE
    ):
        return None
    storage = cd.val.instance.storage
    if storage is None or cd.contract.type != xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return None
    contract = cd.contract.contract_id.contract_id.hash
    info = None
    for e in storage.sc_map:
        if (
            e.key.type == _SYM.SCV_VEC
            and e.key.vec is not None
            and len(e.key.vec.sc_vec) == 1
            and _sym(e.key.vec.sc_vec[0]) == b"AssetInfo"
        ):
            info = e.val
            break
    if info is None or info.type != _SYM.SCV_VEC or info.vec is None or len(info.vec.sc_vec) != 2:
        return None
    kind, body = _sym(info.vec.sc_vec[0]), info.vec.sc_vec[1]
    if kind == b"Native":
        native = xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE)
        return native if sac_contract_id(native, passphrase) == contract else None
    if (
        kind not in (b"AlphaNum4", b"AlphaNum12")
        or body.type != _SYM.SCV_MAP
        or body.map is None
        or len(body.map.sc_map) != 2
    ):
        return None
    code_e, issuer_e = body.map.sc_map
    if _sym(code_e.key) != b"asset_code" or code_e.val.type != _SYM.SCV_STRING or not code_e.val.str.sc_string:
        return None
    if _sym(issuer_e.key) != b"issuer" or issuer_e.val.type != _SYM.SCV_BYTES or len(issuer_e.val.bytes.sc_bytes) != 32:
        return None
    code = code_e.val.str.sc_string
    if len(code) > 12:
        return None
    issuer = xdr.AccountID(
        xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, xdr.Uint256(issuer_e.val.bytes.sc_bytes))
    )
    if len(code) <= 4:
        asset = xdr.Asset(
            xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
            alpha_num4=xdr.AlphaNum4(xdr.AssetCode4(code.ljust(4, b"\0")), issuer),
        )
    else:
        asset = xdr.Asset(
            xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
            alpha_num12=xdr.AlphaNum12(xdr.AssetCode12(code.ljust(12, b"\0")), issuer),
        )
    return asset if sac_contract_id(asset, passphrase) == contract else None


def contract_data_balance(cd: xdr.ContractDataEntry) -> tuple[bytes, int] | None:
    """stellar-etl ``ContractBalanceFromContractData``: ``(holder contract id, amount)`` of a SAC balance
    entry whose holder is a contract."""
    if (
        cd.contract.type != xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT
        or cd.key.type != _SYM.SCV_VEC
        or cd.key.vec is None
    ):
        return None
    key = cd.key.vec.sc_vec
    if len(key) != 2 or _sym(key[0]) != b"Balance" or key[1].type != _SYM.SCV_ADDRESS:
        return None
    if key[1].address.type != xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return None
    if cd.val.type != _SYM.SCV_MAP or cd.val.map is None or len(cd.val.map.sc_map) != 3:
        return None
    amount, authorized, clawback = cd.val.map.sc_map
    if _sym(amount.key) != b"amount" or amount.val.type != _SYM.SCV_I128:
        return None
    for e, name in ((authorized, b"authorized"), (clawback, b"clawback")):
        if _sym(e.key) != name or e.val.type != _SYM.SCV_BOOL:
            return None
    hi, lo = amount.val.i128.hi.int64, amount.val.i128.lo.uint64
    if hi < 0:
        return None
    return key[1].address.contract_id.contract_id.hash, (hi << 64) | lo


def contract_data_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict | None:
    cd = entry.data.contract_data
    if cd.key.type == _SYM.SCV_LEDGER_KEY_NONCE or cd.contract.type != xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return None
    key_xdr = ledger_key_xdr(entry.data)
    asset = contract_data_asset(cd, ledger.network_passphrase)
    kind = code = issuer = ""
    if asset is not None:
        kind, code, issuer = asset_parts(asset)
        code = code.replace("\0", "")
    balance = contract_data_balance(cd)
    return {
        "contract_id": contract_strkey(cd.contract.contract_id),
        "contract_key_type": go_enum_string(cd.key.type),
        "contract_durability": go_enum_string(cd.durability),
        "asset_code": code,
        "asset_issuer": issuer,
        "asset_type": kind,
        "balance_holder": contract_strkey(balance[0]) if balance else "",
        "balance": str(balance[1]) if balance else "",
        "ledger_key_hash": hashlib.sha256(key_xdr).hexdigest(),
        "ledger_key_hash_base_64": base64.b64encode(key_xdr).decode(),
        "key": base64.b64encode(cd.key.to_xdr_bytes()).decode(),
        "key_decoded": to_json(scval_to_json(cd.key)),
        "val": base64.b64encode(cd.val.to_xdr_bytes()).decode(),
        "val_decoded": to_json(scval_to_json(cd.val)),
        "contract_data_xdr": base64.b64encode(cd.to_xdr_bytes()).decode(),
    }


processor(
    "contract_data",
    schema=CONTRACT_DATA_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Soroban contract data entry changes (stellar-etl contract_data): contract, key and value "
    "(XDR and JSON), durability, Stellar Asset Contract asset and contract-held balances; nonce entries are "
    "skipped." + _DESCRIPTION_TAIL,
    tags=("entries", "soroban"),
)(_table(LET.CONTRACT_DATA, contract_data_fields, sponsor=False))

# --- ttl -------------------------------------------------------------------------------------------------

TTL_SCHEMA = pa.schema(
    [
        col("key_hash", pa.string(), "hex sha256 of the LedgerKey whose lifetime this entry holds", nullable=False),
        col("live_until_ledger_seq", pa.uint32(), "last ledger in which the entry is live"),
        *_context_columns(sponsor=False),
    ]
)


def ttl_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    ttl = entry.data.ttl
    return {"key_hash": ttl.key_hash.hash.hex(), "live_until_ledger_seq": ttl.live_until_ledger_seq.uint32}


processor(
    "ttl",
    schema=TTL_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Soroban TTL entry changes (stellar-etl ttl): key hash and live-until ledger." + _DESCRIPTION_TAIL,
    tags=("entries", "soroban"),
)(_table(LET.TTL, ttl_fields, sponsor=False))

# --- account signers ---------------------------------------------------------------------------------

ACCOUNT_SIGNERS_SCHEMA = pa.schema(
    [
        col("account_id", pa.string(), "G... account", nullable=False),
        col("signer", pa.string(), "signer key strkey (G, T, X or P...; the master key is the account itself)",
            nullable=False),
        col("weight", pa.int32(), "signer weight (0 on a row of a signer the change removed)", nullable=False),
        col("sponsor", pa.string(), "G... account sponsoring the signer's reserve"),
        *_context_columns(sponsor=False),
    ]
)


def _sponsor_ids(account: xdr.AccountEntry) -> list[str | None]:
    ext = account.ext
    if ext.v != 1 or ext.v1.ext.v != 2:
        return []
    return [account_id(s.sponsorship_descriptor) if s.sponsorship_descriptor is not None else None
            for s in ext.v1.ext.v2.signer_sponsoring_i_ds]


def account_signers_changed(ch: EntryChange) -> bool:
    """Go ``utils.AccountSignersChanged``: the account was created or removed, or its signers, their weights
    or their sponsors changed."""
    if ch.pre is None or ch.post is None:
        return True
    pre, post = ch.pre.data.account, ch.post.data.account
    return signer_summary(pre) != signer_summary(post) or _sponsor_ids(pre) != _sponsor_ids(post)


def signer_rows(ch: EntryChange) -> list[dict]:
    """stellar-etl ``TransformSigners``: one row per signer of the entry (master key included when its weight
    is positive), then, for an update, a removed row (weight 0) per signer the update dropped; by weight,
    then signer."""
    account = ch.entry.data.account
    owner = account_id(account.account_id)
    sponsors = signer_sponsors(account)
    rows = [{"account_id": owner, "signer": s, "weight": w, "sponsor": sponsors.get(s)}
            for s, w in signer_summary(account).items()]
    if ch.change_type == LCT.LEDGER_ENTRY_UPDATED.value and ch.pre is not None:
        pre = ch.pre.data.account
        post_signers = signer_summary(account)
        pre_sponsors = signer_sponsors(pre)
        for s in signer_summary(pre):
            if s not in post_signers:
                rows.append({"account_id": owner, "signer": s, "weight": 0, "sponsor": pre_sponsors.get(s),
                             "last_modified_ledger": ch.pre.last_modified_ledger_seq.uint32,
                             "ledger_entry_change": LCT.LEDGER_ENTRY_REMOVED.value, "change_type": "removed",
                             "deleted": True})
    rows.sort(key=lambda r: (r["weight"], r["signer"]))
    return rows


@processor(
    "account_signers",
    schema=ACCOUNT_SIGNERS_SCHEMA,
    primary_key=("ledger_sequence", "change_index", "signer"),
    config=EntryChangesConfig,
    description="Account signers (stellar-etl account_signers): for each account change that touches signers, one "
    "row per signer with weight and sponsor, plus a removed row (weight 0, deleted) per signer an update dropped."
    + _DESCRIPTION_TAIL,
    tags=("entries", "accounts"),
)
def account_signers(batch: list[Ledger], config: EntryChangesConfig) -> list[dict]:
    rows = []
    for ledger in apply_where(batch, config):
        changes = indexed_changes(ledger)
        if config.compact:
            changes = list(enumerate(compact_changes([c for _, c in changes if c.entry_type == LET.ACCOUNT],
                                                     ledger.sequence)))
        for index, ch in changes:
            if ch.entry_type != LET.ACCOUNT or not account_signers_changed(ch):
                continue
            context = _context(ledger, ch, index, sponsor=False)
            rows += [{**context, **r} for r in signer_rows(ch)]
    return rows


# --- contract code -----------------------------------------------------------------------------------

_COST_INPUTS = ("n_instructions", "n_functions", "n_globals", "n_table_entries", "n_types", "n_data_segments",
                "n_elem_segments", "n_imports", "n_exports", "n_data_segment_bytes")

CONTRACT_CODE_SCHEMA = pa.schema(
    [
        col("contract_code_hash", pa.string(), "hex sha256 of the Wasm", nullable=False),
        col("contract_code_ext_v", pa.int32(), "ContractCodeEntry extension version (1: cost inputs present)"),
        col("ledger_key_hash", pa.string(), "hex sha256 of the entry's LedgerKey XDR"),
        *[col(n, pa.uint32(), f"Wasm cost input {n[2:]} (0 without cost inputs)") for n in _COST_INPUTS],
        col("ledger_key_hash_base_64", pa.string(), "base64 LedgerKey XDR (stellar-etl's name)"),
        *_context_columns(sponsor=False),
    ]
)


def contract_code_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    code = entry.data.contract_code
    key_xdr = ledger_key_xdr(entry.data)
    inputs = code.ext.v1.cost_inputs if code.ext.v == 1 else None
    return {
        "contract_code_hash": code.hash.hash.hex(),
        "contract_code_ext_v": code.ext.v,
        "ledger_key_hash": hashlib.sha256(key_xdr).hexdigest(),
        **{n: getattr(inputs, n).uint32 if inputs is not None else 0 for n in _COST_INPUTS},
        "ledger_key_hash_base_64": base64.b64encode(key_xdr).decode(),
    }


processor(
    "contract_code",
    schema=CONTRACT_CODE_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Soroban contract code (Wasm) entry changes (stellar-etl contract_code): code hash, ledger key and "
    "the Wasm cost inputs." + _DESCRIPTION_TAIL,
    tags=("entries", "soroban"),
)(_table(LET.CONTRACT_CODE, contract_code_fields, sponsor=False))


# --- config settings ---------------------------------------------------------------------------------

_CS = xdr.ConfigSettingID

#: (column, type, description, arm of ConfigSettingEntry, field of that arm): stellar-etl's columns, where
#: several columns (pre- and post-protocol-23 names) read the same field.
_CONFIG_FIELDS = [
    ("ledger_max_instructions", pa.int64(), "contract_compute", "ledger_max_instructions"),
    ("tx_max_instructions", pa.int64(), "contract_compute", "tx_max_instructions"),
    ("fee_rate_per_instructions_increment", pa.int64(), "contract_compute", "fee_rate_per_instructions_increment"),
    ("tx_memory_limit", pa.uint32(), "contract_compute", "tx_memory_limit"),
    ("ledger_max_read_ledger_entries", pa.uint32(), "contract_ledger_cost", "ledger_max_disk_read_entries"),
    ("ledger_max_disk_read_entries", pa.uint32(), "contract_ledger_cost", "ledger_max_disk_read_entries"),
    ("ledger_max_read_bytes", pa.uint32(), "contract_ledger_cost", "ledger_max_disk_read_bytes"),
    ("ledger_max_disk_read_bytes", pa.uint32(), "contract_ledger_cost", "ledger_max_disk_read_bytes"),
    ("ledger_max_write_ledger_entries", pa.uint32(), "contract_ledger_cost", "ledger_max_write_ledger_entries"),
    ("ledger_max_write_bytes", pa.uint32(), "contract_ledger_cost", "ledger_max_write_bytes"),
    ("tx_max_read_ledger_entries", pa.uint32(), "contract_ledger_cost", "tx_max_disk_read_entries"),
    ("tx_max_disk_read_entries", pa.uint32(), "contract_ledger_cost", "tx_max_disk_read_entries"),
    ("tx_max_read_bytes", pa.uint32(), "contract_ledger_cost", "tx_max_disk_read_bytes"),
    ("tx_max_disk_read_bytes", pa.uint32(), "contract_ledger_cost", "tx_max_disk_read_bytes"),
    ("tx_max_write_ledger_entries", pa.uint32(), "contract_ledger_cost", "tx_max_write_ledger_entries"),
    ("tx_max_write_bytes", pa.uint32(), "contract_ledger_cost", "tx_max_write_bytes"),
    ("fee_read_ledger_entry", pa.int64(), "contract_ledger_cost", "fee_disk_read_ledger_entry"),
    ("fee_disk_read_ledger_entry", pa.int64(), "contract_ledger_cost", "fee_disk_read_ledger_entry"),
    ("fee_write_ledger_entry", pa.int64(), "contract_ledger_cost", "fee_write_ledger_entry"),
    ("fee_read_1kb", pa.int64(), "contract_ledger_cost", "fee_disk_read1_kb"),
    ("fee_write_1kb", pa.int64(), "contract_ledger_cost_ext", "fee_write1_kb"),
    ("fee_disk_read_1kb", pa.int64(), "contract_ledger_cost", "fee_disk_read1_kb"),
    ("bucket_list_target_size_bytes", pa.int64(), "contract_ledger_cost", "soroban_state_target_size_bytes"),
    ("soroban_state_target_size_bytes", pa.int64(), "contract_ledger_cost", "soroban_state_target_size_bytes"),
    ("write_fee_1kb_bucket_list_low", pa.int64(), "contract_ledger_cost", "rent_fee1_kb_soroban_state_size_low"),
    ("rent_fee_1kb_soroban_state_size_low", pa.int64(), "contract_ledger_cost", "rent_fee1_kb_soroban_state_size_low"),
    ("write_fee_1kb_bucket_list_high", pa.int64(), "contract_ledger_cost", "rent_fee1_kb_soroban_state_size_high"),
    ("rent_fee_1kb_soroban_state_size_high", pa.int64(), "contract_ledger_cost",
     "rent_fee1_kb_soroban_state_size_high"),
    ("bucket_list_write_fee_growth_factor", pa.uint32(), "contract_ledger_cost", "soroban_state_rent_fee_growth_factor"),
    ("soroban_state_rent_fee_growth_factor", pa.uint32(), "contract_ledger_cost",
     "soroban_state_rent_fee_growth_factor"),
    ("fee_historical_1kb", pa.int64(), "contract_historical_data", "fee_historical1_kb"),
    ("tx_max_contract_events_size_bytes", pa.uint32(), "contract_events", "tx_max_contract_events_size_bytes"),
    ("fee_contract_events_1kb", pa.int64(), "contract_events", "fee_contract_events1_kb"),
    ("ledger_max_txs_size_bytes", pa.uint32(), "contract_bandwidth", "ledger_max_txs_size_bytes"),
    ("tx_max_size_bytes", pa.uint32(), "contract_bandwidth", "tx_max_size_bytes"),
    ("fee_tx_size_1kb", pa.int64(), "contract_bandwidth", "fee_tx_size1_kb"),
]
_CONFIG_FIELDS_ARCHIVAL = [
    ("max_entry_ttl", pa.uint32(), "max_entry_ttl"),
    ("min_temporary_ttl", pa.uint32(), "min_temporary_ttl"),
    ("min_persistent_ttl", pa.uint32(), "min_persistent_ttl"),
    ("persistent_rent_rate_denominator", pa.int64(), "persistent_rent_rate_denominator"),
    ("temp_rent_rate_denominator", pa.int64(), "temp_rent_rate_denominator"),
    ("max_entries_to_archive", pa.uint32(), "max_entries_to_archive"),
    ("bucket_list_size_window_sample_size", pa.uint32(), "live_soroban_state_size_window_sample_size"),
    ("live_soroban_state_size_window_sample_size", pa.uint32(), "live_soroban_state_size_window_sample_size"),
    ("live_soroban_state_size_window_sample_period", pa.uint32(), "live_soroban_state_size_window_sample_period"),
    ("eviction_scan_size", pa.uint64(), "eviction_scan_size"),
    ("starting_eviction_scan_level", pa.uint32(), "starting_eviction_scan_level"),
]
_CONFIG_FIELDS_LATE = [
    ("ledger_max_dependent_tx_clusters", pa.uint32(), "contract_parallel_compute", "ledger_max_dependent_tx_clusters"),
    ("tx_max_footprint_entries", pa.uint32(), "contract_ledger_cost_ext", "tx_max_footprint_entries"),
    ("ledger_target_close_time_milliseconds", pa.uint32(), "contract_scp_timing",
     "ledger_target_close_time_milliseconds"),
    ("nomination_timeout_initial_milliseconds", pa.uint32(), "contract_scp_timing",
     "nomination_timeout_initial_milliseconds"),
    ("nomination_timeout_increment_milliseconds", pa.uint32(), "contract_scp_timing",
     "nomination_timeout_increment_milliseconds"),
    ("ballot_timeout_initial_milliseconds", pa.uint32(), "contract_scp_timing", "ballot_timeout_initial_milliseconds"),
    ("ballot_timeout_increment_milliseconds", pa.uint32(), "contract_scp_timing",
     "ballot_timeout_increment_milliseconds"),
]
_CONFIG_LISTS = [
    ("frozen_ledger_keys", "base64 LedgerKey XDR of the frozen ledger keys (CAP-77)"),
    ("frozen_ledger_keys_to_freeze", "base64 LedgerKey XDR of the keys a frozen-keys delta freezes"),
    ("frozen_ledger_keys_to_unfreeze", "base64 LedgerKey XDR of the keys a frozen-keys delta unfreezes"),
    ("freeze_bypass_txs", "hex hashes of the transactions allowed to bypass frozen keys"),
    ("freeze_bypass_txs_to_add", "hex hashes a freeze-bypass delta adds"),
    ("freeze_bypass_txs_to_remove", "hex hashes a freeze-bypass delta removes"),
]
_SETTING = "setting (0 when the entry is another setting)"
_COST_PARAMS = 'JSON array of {"ExtV", "ConstTerm", "LinearTerm"} (decimal strings), one per cost type'

CONFIG_SETTINGS_SCHEMA = pa.schema(
    [
        col("config_setting_id", pa.int32(), "ConfigSettingID (0 contract max size ... 20 freeze-bypass delta)",
            nullable=False),
        col("contract_max_size_bytes", pa.uint32(), f"max Wasm size in bytes; {_SETTING}"),
        *[col(name, t, f"{arm}.{field}; {_SETTING}") for name, t, arm, field in _CONFIG_FIELDS],
        col("contract_cost_params_cpu_insns", pa.string(), f"CPU instruction cost parameters: {_COST_PARAMS}"),
        col("contract_cost_params_mem_bytes", pa.string(), f"memory cost parameters: {_COST_PARAMS}"),
        col("contract_data_key_size_bytes", pa.uint32(), f"max contract data key size; {_SETTING}"),
        col("contract_data_entry_size_bytes", pa.uint32(), f"max contract data entry size; {_SETTING}"),
        *[col(name, t, f"state_archival_settings.{field}; {_SETTING}") for name, t, field in _CONFIG_FIELDS_ARCHIVAL[:3]],
        col("auto_bump_ledgers", pa.uint32(), "always 0 (a pre-release setting stellar-etl keeps a column for)"),
        *[col(name, t, f"state_archival_settings.{field}; {_SETTING}") for name, t, field in _CONFIG_FIELDS_ARCHIVAL[3:]],
        col("ledger_max_tx_count", pa.uint32(), f"contract_execution_lanes.ledger_max_tx_count; {_SETTING}"),
        col("bucket_list_size_window", pa.list_(pa.uint64()), "live Soroban state size window samples"),
        col("live_soroban_state_size_window", pa.list_(pa.uint64()), "live Soroban state size window samples"),
        *[col(name, t, f"{arm}.{field} (protocol 23); {_SETTING}") for name, t, arm, field in _CONFIG_FIELDS_LATE],
        *[col(name, pa.list_(pa.string()), f"{desc} (protocol 26)") for name, desc in _CONFIG_LISTS],
        *_context_columns(sponsor=False),
    ]
)


def _cost_params(params) -> str | None:
    if params is None:
        return json.dumps([])
    return json.dumps(
        [{"ExtV": str(p.ext.v), "ConstTerm": str(p.const_term.int64), "LinearTerm": str(p.linear_term.int64)}
         for p in params.contract_cost_params],
        separators=(",", ":"),
    )


def _number(value) -> int:
    """The integer inside an XDR integer wrapper (``Uint32``, ``Int64``, ``Uint64``) or a plain int."""
    for width in ("uint32", "int64", "uint64"):
        if hasattr(value, width):
            return getattr(value, width)
    return value


def config_setting_fields(entry: xdr.LedgerEntry, ledger: Ledger) -> dict:
    """stellar-etl ``TransformConfigSetting``: each column read from its setting's arm, zero (empty for lists)
    when the entry holds another setting."""
    cs = entry.data.config_setting
    row: dict = {"config_setting_id": cs.config_setting_id.value, "auto_bump_ledgers": 0}
    row["contract_max_size_bytes"] = _number(cs.contract_max_size_bytes) if cs.contract_max_size_bytes is not None else 0
    for name, _t, arm, field in _CONFIG_FIELDS + _CONFIG_FIELDS_LATE:
        part = getattr(cs, arm)
        row[name] = _number(getattr(part, field)) if part is not None else 0
    for name, _t, field in _CONFIG_FIELDS_ARCHIVAL:
        part = cs.state_archival_settings
        row[name] = _number(getattr(part, field)) if part is not None else 0
    row["contract_cost_params_cpu_insns"] = _cost_params(cs.contract_cost_params_cpu_insns)
    row["contract_cost_params_mem_bytes"] = _cost_params(cs.contract_cost_params_mem_bytes)
    for name, value in (("contract_data_key_size_bytes", cs.contract_data_key_size_bytes),
                        ("contract_data_entry_size_bytes", cs.contract_data_entry_size_bytes)):
        row[name] = _number(value) if value is not None else 0
    lanes = cs.contract_execution_lanes
    row["ledger_max_tx_count"] = lanes.ledger_max_tx_count.uint32 if lanes is not None else 0
    window = [w.uint64 for w in cs.live_soroban_state_size_window or []]
    row["bucket_list_size_window"] = row["live_soroban_state_size_window"] = window

    def keys(encoded) -> list[str]:
        return [base64.b64encode(xdr.LedgerKey.from_xdr_bytes(k.encoded_ledger_key).to_xdr_bytes()).decode()
                for k in encoded or []]

    frozen, delta = cs.frozen_ledger_keys, cs.frozen_ledger_keys_delta
    row["frozen_ledger_keys"] = keys(frozen.keys if frozen is not None else None)
    row["frozen_ledger_keys_to_freeze"] = keys(delta.keys_to_freeze if delta is not None else None)
    row["frozen_ledger_keys_to_unfreeze"] = keys(delta.keys_to_unfreeze if delta is not None else None)
    bypass, bypass_delta = cs.freeze_bypass_txs, cs.freeze_bypass_txs_delta
    row["freeze_bypass_txs"] = [h.hash.hex() for h in (bypass.tx_hashes if bypass is not None else [])]
    row["freeze_bypass_txs_to_add"] = [h.hash.hex() for h in (bypass_delta.add_txs if bypass_delta is not None else [])]
    row["freeze_bypass_txs_to_remove"] = [
        h.hash.hex() for h in (bypass_delta.remove_txs if bypass_delta is not None else [])
    ]
    return row


processor(
    "config_settings",
    schema=CONFIG_SETTINGS_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Soroban network configuration entry changes (stellar-etl config_settings): one wide row per "
    "changed setting, the setting's own columns filled and the others zero; changes come from protocol upgrades."
    + _DESCRIPTION_TAIL,
    tags=("entries", "soroban"),
)(_table(LET.CONFIG_SETTING, config_setting_fields, sponsor=False))


# --- restored keys -----------------------------------------------------------------------------------

RESTORED_KEYS_SCHEMA = pa.schema(
    [
        col("ledger_key_hash", pa.string(), "base64 LedgerKey XDR of the restored entry (stellar-etl's name)",
            nullable=False),
        col("ledger_entry_type", pa.string(), "Go name of the entry type, e.g. LedgerEntryTypeContractData",
            nullable=False),
        *_context_columns(sponsor=False),
    ]
)


@processor(
    "restored_keys",
    schema=RESTORED_KEYS_SCHEMA,
    primary_key=("ledger_sequence", "change_index"),
    config=EntryChangesConfig,
    description="Ledger keys restored from the archive (stellar-etl restored_key): every RESTORED change of any "
    "entry type (contract data, code and their TTLs)." + _DESCRIPTION_TAIL,
    tags=("entries", "soroban"),
)
def restored_keys(batch: list[Ledger], config: EntryChangesConfig) -> list[dict]:
    rows = []
    restored = LCT.LEDGER_ENTRY_RESTORED.value
    for ledger in apply_where(batch, config):
        changes = indexed_changes(ledger)
        if config.compact:
            changes = list(enumerate(compact_changes([c for _, c in changes], ledger.sequence)))
        for index, ch in changes:
            if ch.change_type != restored:
                continue
            key = ledger_key_xdr(ch.entry.data)
            rows.append({
                "ledger_key_hash": base64.b64encode(key).decode(),
                "ledger_entry_type": go_enum_string(ch.entry_type),
                **_context(ledger, ch, index, sponsor=False),
            })
    return rows
