"""``effects``: one row per effect of each operation of a successful transaction (stellar-etl ``history_effects``).

Follows stellar-etl's ``internal/transform/effects.go`` (Horizon's effects logic) operation by operation:
operation-specific effects first, then sponsorship effects and liquidity pool creation/removal found in
the operation's ledger entry changes (sorted by ledger key, as Go's ingest package does). Effect ids are
``"{operation_id}-{index}"``; ``details`` is a JSON object rendered as a string.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging

import pyarrow as pa
from stellar_sdk import xdr

from cdp_ray.processors import native
from cdp_ray.processors.base import col, processor, table_from_dicts
from cdp_ray.processors.common import (
    TIMESTAMP,
    account_id,
    amount_string,
    asset_canonical,
    asset_code_from_allow_trust,
    asset_parts,
    claimable_balance_id_hex,
    go_json,
    muxed_account,
    pool_id_hex,
    pool_id_strkey,
    signer_sponsors,
    signer_summary,
    sponsoring_id,
    toid,
)
from cdp_ray.processors.entries import changes_from
from cdp_ray.processors.filters import FilterConfig, apply_where
from cdp_ray.processors.operation_details import claim_predicate_json, transaction_source
from cdp_ray.processors.scval import sac_event
from cdp_ray.xdr import Ledger, Transaction

log = logging.getLogger(__name__)

OT = xdr.OperationType
LET = xdr.LedgerEntryType

EFFECT_TYPES: dict[str, int] = {
    "account_created": 0,
    "account_removed": 1,
    "account_credited": 2,
    "account_debited": 3,
    "account_thresholds_updated": 4,
    "account_home_domain_updated": 5,
    "account_flags_updated": 6,
    "account_inflation_destination_updated": 7,
    "signer_created": 10,
    "signer_removed": 11,
    "signer_updated": 12,
    "trustline_created": 20,
    "trustline_removed": 21,
    "trustline_updated": 22,
    "trustline_flags_updated": 26,
    "offer_created": 30,
    "offer_removed": 31,
    "offer_updated": 32,
    "trade": 33,
    "data_created": 40,
    "data_removed": 41,
    "data_updated": 42,
    "sequence_bumped": 43,
    "claimable_balance_created": 50,
    "claimable_balance_claimant_created": 51,
    "claimable_balance_claimed": 52,
    "account_sponsorship_created": 60,
    "account_sponsorship_updated": 61,
    "account_sponsorship_removed": 62,
    "trustline_sponsorship_created": 63,
    "trustline_sponsorship_updated": 64,
    "trustline_sponsorship_removed": 65,
    "data_sponsorship_created": 66,
    "data_sponsorship_updated": 67,
    "data_sponsorship_removed": 68,
    "claimable_balance_sponsorship_created": 69,
    "claimable_balance_sponsorship_updated": 70,
    "claimable_balance_sponsorship_removed": 71,
    "signer_sponsorship_created": 72,
    "signer_sponsorship_updated": 73,
    "signer_sponsorship_removed": 74,
    "claimable_balance_clawed_back": 80,
    "liquidity_pool_deposited": 90,
    "liquidity_pool_withdrew": 91,
    "liquidity_pool_trade": 92,
    "liquidity_pool_created": 93,
    "liquidity_pool_removed": 94,
    "liquidity_pool_revoked": 95,
    "contract_credited": 96,
    "contract_debited": 97,
    "extend_footprint_ttl": 98,
    "restore_footprint": 99,
}

EFFECTS_SCHEMA = pa.schema(
    [
        col("id", pa.string(), '"{operation_id}-{index}"', nullable=False),
        col("operation_id", pa.int64(), "TOID of the operation that caused the effect", nullable=False),
        col("index", pa.uint32(), "0-based position of the effect within its operation", nullable=False),
        col("address", pa.string(), "G... account the effect is about", nullable=False),
        col("address_muxed", pa.string(), "M... address when the account was given as a muxed account"),
        col("type", pa.int32(), "numeric effect type (Horizon's)", nullable=False),
        col("type_string", pa.string(), "effect type name, e.g. account_credited, trade", nullable=False),
        col("details", pa.string(), "JSON object of type-specific details (amounts as 7-decimal strings)"),
        col("ledger_sequence", pa.uint32(), "ledger sequence", nullable=False),
        col("closed_at", TIMESTAMP, "ledger close time (UTC)", nullable=False),
    ]
)

_SPONSORSHIP_PREFIX = {
    LET.ACCOUNT: "account",
    LET.TRUSTLINE: "trustline",
    LET.DATA: "data",
    LET.CLAIMABLE_BALANCE: "claimable_balance",
}


class EffectError(ValueError):
    """A successful operation whose result or meta lacks what its effects need."""


# --- small helpers ------------------------------------------------------------------------------------


def sorted_operation_changes(t: Transaction, index: int, protocol: int) -> list[tuple]:
    """``(pre, post)`` ledger entry changes of operation ``index`` (0-based), stably sorted by ledger key
    (Go ingest's ``GetOperationChanges``; none for ``txINTERNAL_ERROR`` up to protocol 12)."""
    if protocol <= 12 and t.result_code == xdr.TransactionResultCode.txINTERNAL_ERROR:
        return []
    metas = t.operation_meta()
    if index >= len(metas):
        return []
    return [(c.pre, c.post) for c in changes_from(metas[index].changes)]


def _entry_type(change) -> xdr.LedgerEntryType:
    pre, post = change
    return (pre if pre is not None else post).data.type


def add_asset_details(d: dict, asset, prefix: str = "") -> None:
    """Go ``addAssetDetails``: ``{prefix}asset_type`` and, unless native, ``asset_code``/``asset_issuer``."""
    t, code, issuer = asset_parts(asset)
    d[prefix + "asset_type"] = t
    if t != "native":
        d[prefix + "asset_code"] = code
        d[prefix + "asset_issuer"] = issuer


def _asset_sort_key(asset: xdr.Asset) -> tuple:
    """Go ``Asset.LessThan`` order: type, then code, then issuer."""
    _, code, issuer = asset_parts(asset)
    return asset.type.value, code, issuer


def claim_body(claim: xdr.ClaimAtom):
    """The ``ClaimOfferAtomV0`` / ``ClaimOfferAtom`` / ``ClaimLiquidityAtom`` inside a ``ClaimAtom``."""
    return claim.v0 or claim.order_book or claim.liquidity_pool


def claim_seller(claim: xdr.ClaimAtom) -> str:
    """``G...`` owner of the claimed order-book offer."""
    if claim.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_V0:
        return account_id(xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, claim.v0.seller_ed25519))
    return account_id(claim.order_book.seller_id)


def liquidity_pool_details(lp: xdr.LiquidityPoolEntry) -> dict:
    """Horizon's ``liquidity_pool`` detail object of a constant-product pool entry."""
    cp = lp.body.constant_product
    return {
        "id": pool_id_hex(lp.liquidity_pool_id),
        "fee_bp": cp.params.fee.int32,
        "type": "constant_product",
        "total_trustlines": str(cp.pool_shares_trust_line_count.int64),
        "total_shares": amount_string(cp.total_pool_shares.int64),
        "reserves": [
            {"asset": asset_canonical(cp.params.asset_a), "amount": amount_string(cp.reserve_a.int64)},
            {"asset": asset_canonical(cp.params.asset_b), "amount": amount_string(cp.reserve_b.int64)},
        ],
    }


def _pool_and_delta(changes, pool_id: bytes | None):
    """Go ``getLiquidityPoolAndProductDelta``: the first pool change (of ``pool_id`` if given) and its
    ``(dA, dB, dShares)``; None when there is none."""
    for pre, post in changes:
        if _entry_type((pre, post)) != LET.LIQUIDITY_POOL:
            continue
        lp = None
        a0 = b0 = s0 = a1 = b1 = s1 = 0
        if pre is not None:
            if pool_id is not None and pre.data.liquidity_pool.liquidity_pool_id.pool_id.hash != pool_id:
                continue
            lp = pre.data.liquidity_pool
            cp = lp.body.constant_product
            a0, b0, s0 = cp.reserve_a.int64, cp.reserve_b.int64, cp.total_pool_shares.int64
        if post is not None:
            if pool_id is not None and post.data.liquidity_pool.liquidity_pool_id.pool_id.hash != pool_id:
                continue
            lp = post.data.liquidity_pool
            cp = lp.body.constant_product
            a1, b1, s1 = cp.reserve_a.int64, cp.reserve_b.int64, cp.total_pool_shares.int64
        return lp, (a1 - a0, b1 - b0, s1 - s0)
    return None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _contract_events(t: Transaction, index: int) -> list[xdr.ContractEvent]:
    m = t.meta
    if m.v == 3:
        return list(m.v3.soroban_meta.events) if m.v3.soroban_meta is not None else []
    if m.v == 4:
        ops = m.v4.operations or []
        return list(ops[index].events) if index < len(ops) else []
    return []


def _is_account(address: str) -> bool:
    return address.startswith("G")


# --- the per-operation builder ------------------------------------------------------------------------


class _OperationEffects:
    """Collects the effects of one operation, in stellar-etl's order."""

    def __init__(self, t: Transaction, index: int, op: xdr.Operation, op_id: int, protocol: int, network: str | None):
        self.t, self.index, self.op, self.op_id, self.network = t, index, op, op_id, network
        self.source = op.source_account if op.source_account is not None else transaction_source(t)
        results = t.operation_results
        self.result = results[index].tr if index < len(results) else None
        self.changes = sorted_operation_changes(t, index, protocol)
        self.rows: list[tuple[str, str | None, str, dict]] = []

    # -- adding rows

    def add(self, address: str, muxed: str | None, kind: str, details: dict) -> None:
        self.rows.append((address, muxed, kind, details))

    def add_muxed(self, m: xdr.MuxedAccount, kind: str, details: dict) -> None:
        self.add(*muxed_account(m), kind, details)

    def add_account(self, a: xdr.AccountID, kind: str, details: dict) -> None:
        self.add(account_id(a), None, kind, details)

    # -- dispatch

    def build(self) -> list[tuple[str, str | None, str, dict]]:
        body = self.op.body
        handler = _HANDLERS.get(body.type)
        if handler is not None:
            handler(self, body)
        for change in self.changes:
            self._entry_sponsorship(change)
            self._signer_sponsorship(change)
        for change in self.changes:
            self._pool_created_removed(change)
        return self.rows

    # -- operations

    def create_account(self, body) -> None:
        op = body.create_account_op
        amount = amount_string(op.starting_balance.int64)
        self.add_account(op.destination, "account_created", {"starting_balance": amount})
        self.add_muxed(self.source, "account_debited", {"asset_type": "native", "amount": amount})
        self.add_account(op.destination, "signer_created", {"public_key": account_id(op.destination), "weight": 1})

    def payment(self, body) -> None:
        op = body.payment_op
        d = {"amount": amount_string(op.amount.int64)}
        add_asset_details(d, op.asset)
        self.add_muxed(op.destination, "account_credited", d)
        self.add_muxed(self.source, "account_debited", dict(d))

    def path_payment_strict_receive(self, body) -> None:
        op = body.path_payment_strict_receive_op
        success = self.result.path_payment_strict_receive_result.success
        d = {"amount": amount_string(op.dest_amount.int64)}
        add_asset_details(d, op.dest_asset)
        self.add_muxed(op.destination, "account_credited", d)
        d = {"amount": amount_string(_send_amount(success))}
        add_asset_details(d, op.send_asset)
        self.add_muxed(self.source, "account_debited", d)
        # stellar-etl's addIngestTradeEffects(..., isPathPayment=false): strict-receive claims keep offer_created.
        self._trades(success.offers)

    def path_payment_strict_send(self, body) -> None:
        op = body.path_payment_strict_send_op
        success = self.result.path_payment_strict_send_result.success
        d = {"amount": amount_string(success.last.amount.int64)}
        add_asset_details(d, op.dest_asset)
        self.add_muxed(op.destination, "account_credited", d)
        d = {"amount": amount_string(op.send_amount.int64)}
        add_asset_details(d, op.send_asset)
        self.add_muxed(self.source, "account_debited", d)
        self._trades(success.offers, strict_send=True)

    def manage_sell_offer(self, body) -> None:
        self._trades(self.result.manage_sell_offer_result.success.offers_claimed)

    def manage_buy_offer(self, body) -> None:
        self._trades(self.result.manage_buy_offer_result.success.offers_claimed)

    def create_passive_sell_offer(self, body) -> None:
        # stellar-core sets the ManageSellOffer result arm for passive offers.
        r = self.result
        res = r.manage_sell_offer_result if r.type == OT.MANAGE_SELL_OFFER else r.create_passive_sell_offer_result
        self._trades(res.success.offers_claimed)

    def set_options(self, body) -> None:
        op = body.set_options_op
        if op.home_domain is not None:
            self.add_muxed(self.source, "account_home_domain_updated", {"home_domain": _text(op.home_domain.string32)})
        thresholds = {}
        for name, value in (
            ("low_threshold", op.low_threshold),
            ("med_threshold", op.med_threshold),
            ("high_threshold", op.high_threshold),
        ):
            if value is not None:
                thresholds[name] = value.uint32
        if thresholds:
            self.add_muxed(self.source, "account_thresholds_updated", thresholds)
        flags: dict = {}
        if op.set_flags is not None:
            _account_flag_details(flags, op.set_flags.uint32, True)
        if op.clear_flags is not None:
            _account_flag_details(flags, op.clear_flags.uint32, False)
        if flags:
            self.add_muxed(self.source, "account_flags_updated", flags)
        if op.inflation_dest is not None:
            self.add_muxed(
                self.source,
                "account_inflation_destination_updated",
                {"inflation_destination": account_id(op.inflation_dest)},
            )
        for pre, post in self.changes:
            if _entry_type((pre, post)) != LET.ACCOUNT or pre is None or post is None:
                continue
            before, after = signer_summary(pre.data.account), signer_summary(post.data.account)
            if before == after:
                continue
            for key in sorted(before):
                if key not in after:
                    self.add_muxed(self.source, "signer_removed", {"public_key": key})
                elif after[key] != before[key]:
                    self.add_muxed(self.source, "signer_updated", {"public_key": key, "weight": after[key]})
            for key in sorted(after):
                if key not in before:
                    self.add_muxed(self.source, "signer_created", {"public_key": key, "weight": after[key]})

    def change_trust(self, body) -> None:
        op = body.change_trust_op
        for pre, post in self.changes:
            if _entry_type((pre, post)) != LET.TRUSTLINE:
                continue
            if pre is None:
                kind, line = "trustline_created", post.data.trust_line
            elif post is None:
                kind, line = "trustline_removed", pre.data.trust_line
            else:
                kind, line = "trustline_updated", post.data.trust_line
            if op.line.type.value != line.asset.type.value:
                continue
            d = {"limit": amount_string(op.limit.int64)}
            if line.asset.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
                pool = _pool_id_of_params(op.line.liquidity_pool)
                d["asset_type"] = "liquidity_pool_shares"
                d["liquidity_pool_id"] = pool.hex()
                d["liquidity_pool_id_strkey"] = pool_id_strkey(xdr.Hash(pool))
            else:
                add_asset_details(d, op.line)
            self.add_muxed(self.source, kind, d)
            break

    def allow_trust(self, body) -> None:
        op = body.allow_trust_op
        issuer = muxed_account(self.source)[0]
        asset_type, code, _ = asset_code_from_allow_trust(op.asset, issuer)
        base = {"trustor": account_id(op.trustor), "asset_type": asset_type, "asset_code": code, "asset_issuer": issuer}
        # A legacy effect without flags, then the flags effect (both authorization flags cleared on deauthorize).
        self.add_muxed(self.source, "trustline_flags_updated", dict(base))
        authorize = op.authorize.uint32
        if authorize & 1:
            self._trustline_flags(base, 1, None)
        elif authorize & 2:
            self._trustline_flags(base, 2, None)
        else:
            self._trustline_flags(base, None, 3)
        self._pool_revoked()

    def account_merge(self, body) -> None:
        amount = amount_string(self.result.account_merge_result.source_account_balance.int64)
        d = {"amount": amount, "asset_type": "native"}
        self.add_muxed(self.source, "account_debited", d)
        self.add_muxed(body.destination, "account_credited", dict(d))
        self.add_muxed(self.source, "account_removed", {})

    def inflation(self, body) -> None:
        for payout in self.result.inflation_result.payouts:
            self.add_account(
                payout.destination,
                "account_credited",
                {"amount": amount_string(payout.amount.int64), "asset_type": "native"},
            )

    def manage_data(self, body) -> None:
        op = body.manage_data_op
        d = {"name": _text(op.data_name.string64)}
        kind = "account_created"  # Go's zero EffectType, kept for parity if no data entry changed
        for pre, post in self.changes:
            if _entry_type((pre, post)) != LET.DATA:
                continue
            if post is not None:
                d["value"] = base64.b64encode(post.data.data.data_value.data_value).decode()
            kind = "data_created" if pre is None else "data_removed" if post is None else "data_updated"
            break
        self.add_muxed(self.source, kind, d)

    def bump_sequence(self, body) -> None:
        for pre, post in self.changes:
            if _entry_type((pre, post)) != LET.ACCOUNT:
                continue
            before, after = (
                pre.data.account.seq_num.sequence_number.int64,
                post.data.account.seq_num.sequence_number.int64,
            )
            if before != after:
                self.add_muxed(self.source, "sequence_bumped", {"new_seq": after})
            break

    def create_claimable_balance(self, body) -> None:
        cb = None
        for pre, post in self.changes:
            if _entry_type((pre, post)) == LET.CLAIMABLE_BALANCE and post is not None:
                cb = post.data.claimable_balance
                self._claimable_balance_created(cb)
                break
        if cb is None:
            raise EffectError(f"operation {self.op_id}: claimable balance entry not found in its changes")
        d = {"amount": amount_string(cb.amount.int64)}
        add_asset_details(d, cb.asset)
        self.add_muxed(self.source, "account_debited", d)

    def claim_claimable_balance(self, body) -> None:
        balance_id = claimable_balance_id_hex(body.claim_claimable_balance_op.balance_id)
        cb = None
        for pre, post in self.changes:
            if _entry_type((pre, post)) != LET.CLAIMABLE_BALANCE or pre is None or post is not None:
                continue
            if claimable_balance_id_hex(pre.data.claimable_balance.balance_id) == balance_id:
                cb = pre.data.claimable_balance
                break
        if cb is None:
            raise EffectError(f"operation {self.op_id}: change not found for balance id {balance_id}")
        amount = amount_string(cb.amount.int64)
        d = {"amount": amount, "balance_id": balance_id, "asset": asset_canonical(cb.asset)}
        if _cb_clawback_enabled(cb):
            d["claimable_balance_clawback_enabled_flag"] = True
        self.add_muxed(self.source, "claimable_balance_claimed", d)
        d = {"amount": amount}
        add_asset_details(d, cb.asset)
        self.add_muxed(self.source, "account_credited", d)

    def clawback(self, body) -> None:
        op = body.clawback_op
        d = {"amount": amount_string(op.amount.int64)}
        add_asset_details(d, op.asset)
        self.add_muxed(self.source, "account_credited", d)
        self.add_muxed(op.from_, "account_debited", dict(d))

    def clawback_claimable_balance(self, body) -> None:
        balance_id = claimable_balance_id_hex(body.clawback_claimable_balance_op.balance_id)
        self.add_muxed(self.source, "claimable_balance_clawed_back", {"balance_id": balance_id})
        for pre, post in self.changes:
            if _entry_type((pre, post)) == LET.CLAIMABLE_BALANCE and post is None and pre is not None:
                cb = pre.data.claimable_balance
                d = {"amount": amount_string(cb.amount.int64)}
                add_asset_details(d, cb.asset)
                self.add_muxed(self.source, "account_credited", d)
                break

    def set_trust_line_flags(self, body) -> None:
        op = body.set_trust_line_flags_op
        base: dict = {"trustor": account_id(op.trustor)}
        add_asset_details(base, op.asset)
        self._trustline_flags(base, op.set_flags.uint32, op.clear_flags.uint32)
        self._pool_revoked()

    def liquidity_pool_deposit(self, body) -> None:
        op = body.liquidity_pool_deposit_op
        self._pool_flow(op, "liquidity_pool_deposited", "reserves_deposited", "shares_received", 1)

    def liquidity_pool_withdraw(self, body) -> None:
        op = body.liquidity_pool_withdraw_op
        self._pool_flow(op, "liquidity_pool_withdrew", "reserves_received", "shares_redeemed", -1)

    def _pool_flow(self, op, effect: str, reserves_key: str, shares_key: str, sign: int) -> None:
        """A deposit (``sign`` 1) or withdrawal (-1): the pool's reserve and share deltas, as positive amounts."""
        found = _pool_and_delta(self.changes, op.liquidity_pool_id.pool_id.hash)
        if found is None:
            raise EffectError(f"operation {self.op_id}: liquidity pool change not found")
        lp, (da, db, ds) = found
        params = lp.body.constant_product.params
        self.add_muxed(
            self.source,
            effect,
            {
                "liquidity_pool": liquidity_pool_details(lp),
                reserves_key: [
                    {"asset": asset_canonical(params.asset_a), "amount": amount_string(sign * da)},
                    {"asset": asset_canonical(params.asset_b), "amount": amount_string(sign * db)},
                ],
                shares_key: amount_string(sign * ds),
            },
        )

    def invoke_host_function(self, body) -> None:
        if not self.network:
            raise EffectError("invoke_host_function effects need the network passphrase of the ledgers")
        for ev in _contract_events(self.t, 0):
            parsed = sac_event(ev, self.network)
            if parsed is None:
                continue
            fn, asset, frm, to, amount = parsed
            d: dict = {}
            add_asset_details(d, asset)
            d["contract_event_type"] = fn
            d["amount"] = amount_string(amount)
            to_d = dict(d)
            if frm is not None:
                if _is_account(frm):
                    self.add(frm, None, "account_debited", d)
                else:
                    d["contract"] = frm
                    self.add_muxed(self.source, "contract_debited", d)
            if to is not None:
                if _is_account(to):
                    self.add(to, None, "account_credited", to_d)
                else:
                    to_d["contract"] = to
                    self.add_muxed(self.source, "contract_credited", to_d)

    def extend_footprint_ttl(self, body) -> None:
        self.add_muxed(
            self.source,
            "extend_footprint_ttl",
            {"entries": self._ttl_keys(), "extend_to": body.extend_footprint_ttl_op.extend_to.uint32},
        )

    def restore_footprint(self, body) -> None:
        self.add_muxed(self.source, "restore_footprint", {"entries": self._ttl_keys()})

    # -- shared pieces

    def _ttl_keys(self) -> list[str]:
        keys = []
        for pre, post in self.changes:
            if post is None:
                raise EffectError(f"operation {self.op_id}: footprint change without a post state")
            if post.data.type == LET.TTL:
                key = xdr.LedgerKey(type=LET.TTL, ttl=xdr.LedgerKeyTtl(key_hash=post.data.ttl.key_hash))
                keys.append(base64.b64encode(key.to_xdr_bytes()).decode())
        return keys

    def _trades(self, claims, strict_send: bool = False) -> None:
        for claim in claims:
            c = claim_body(claim)
            sold, bought = c.amount_sold.int64, c.amount_bought.int64
            if sold == 0 and bought == 0:
                continue
            if claim.type == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_LIQUIDITY_POOL:
                found = _pool_and_delta(self.changes, c.liquidity_pool_id.pool_id.hash)
                if found is None:
                    raise EffectError(f"operation {self.op_id}: liquidity pool change not found")
                self.add_muxed(
                    self.source,
                    "liquidity_pool_trade",
                    {
                        "liquidity_pool": liquidity_pool_details(found[0]),
                        "sold": {"asset": asset_canonical(c.asset_sold), "amount": amount_string(sold)},
                        "bought": {"asset": asset_canonical(c.asset_bought), "amount": amount_string(bought)},
                    },
                )
                continue
            seller = claim_seller(claim)
            buyer, buyer_muxed = muxed_account(self.source)
            offer_id = c.offer_id.int64
            bd = {
                "offer_id": offer_id,
                "seller": seller,
                "bought_amount": amount_string(sold),
                "sold_amount": amount_string(bought),
            }
            add_asset_details(bd, c.asset_sold, "bought_")
            add_asset_details(bd, c.asset_bought, "sold_")
            sd: dict = {
                "offer_id": offer_id,
                "bought_amount": amount_string(bought),
                "sold_amount": amount_string(sold),
                "seller": buyer,
            }
            if buyer_muxed is not None:
                sd["seller_muxed"] = buyer_muxed
                sd["seller_muxed_id"] = self.source.med25519.id.uint64
            add_asset_details(sd, c.asset_bought, "bought_")
            add_asset_details(sd, c.asset_sold, "sold_")
            # stellar-etl emits each claim as trade, offer_updated, offer_removed and (not for strict-send
            # path payments) offer_created, for the buyer and for the seller.
            kinds = (
                ("trade", "offer_updated", "offer_removed")
                if strict_send
                else ("trade", "offer_updated", "offer_removed", "offer_created")
            )
            for kind in kinds:
                self.add(buyer, buyer_muxed, kind, bd)
                self.add(seller, None, kind, sd)

    def _trustline_flags(self, base: dict, set_flags: int | None, clear_flags: int | None) -> None:
        d = dict(base)
        if set_flags is not None:
            _trustline_flag_details(d, set_flags, True)
        if clear_flags is not None:
            _trustline_flag_details(d, clear_flags, False)
        if set_flags is not None or clear_flags is not None:
            self.add_muxed(self.source, "trustline_flags_updated", d)

    def _claimable_balance_created(self, cb: xdr.ClaimableBalanceEntry) -> None:
        balance_id = claimable_balance_id_hex(cb.balance_id)
        amount = amount_string(cb.amount.int64)
        asset = asset_canonical(cb.asset)
        d = {"balance_id": balance_id, "amount": amount, "asset": asset}
        if _cb_clawback_enabled(cb):
            d["claimable_balance_clawback_enabled_flag"] = True
        self.add_muxed(self.source, "claimable_balance_created", d)
        # Claimants come from the operation when it is the creator: core rewrites relative predicates.
        body = self.op.body
        claimants = (
            body.create_claimable_balance_op.claimants if body.type == OT.CREATE_CLAIMABLE_BALANCE else cb.claimants
        )
        for c in claimants:
            self.add_account(
                c.v0.destination,
                "claimable_balance_claimant_created",
                {
                    "balance_id": balance_id,
                    "amount": amount,
                    "predicate": claim_predicate_json(c.v0.predicate),
                    "asset": asset,
                },
            )

    def _pool_revoked(self) -> None:
        found = _pool_and_delta(self.changes, None)
        if found is None:
            return
        lp, (da, db, ds) = found
        created = [
            post.data.claimable_balance
            for pre, post in self.changes
            if _entry_type((pre, post)) == LET.CLAIMABLE_BALANCE and pre is None and post is not None
        ]
        if not created:
            return
        by_asset = {asset_canonical(cb.asset): claimable_balance_id_hex(cb.balance_id) for cb in created}
        for cb in sorted(created, key=lambda cb: _asset_sort_key(cb.asset)):
            self._claimable_balance_created(cb)
        params = lp.body.constant_product.params
        revoked = []
        for asset, delta in ((params.asset_a, da), (params.asset_b, db)):
            key = asset_canonical(asset)
            if key in by_asset:
                revoked.append({"asset": key, "amount": amount_string(-delta), "claimable_balance_id": by_asset[key]})
        self.add_muxed(
            self.source,
            "liquidity_pool_revoked",
            {
                "liquidity_pool": liquidity_pool_details(lp),
                "reserves_revoked": revoked,
                "shares_revoked": amount_string(-ds),
            },
        )

    def _entry_sponsorship(self, change) -> None:
        pre, post = change
        etype = _entry_type(change)
        prefix = _SPONSORSHIP_PREFIX.get(etype)
        if prefix is None:
            return
        pre_s = sponsoring_id(pre) if pre is not None else None
        post_s = sponsoring_id(post) if post is not None else None
        if pre_s is None and post_s is not None:
            kind, d = "created", {"sponsor": post_s}
        elif pre_s is not None and post_s is None:
            kind, d = "removed", {"former_sponsor": pre_s}
        elif pre_s is not None and post_s is not None and pre_s != post_s:
            kind, d = "updated", {"new_sponsor": post_s, "former_sponsor": pre_s}
        else:
            return
        data = (post if post is not None else pre).data
        name = f"{prefix}_sponsorship_{kind}"
        if etype == LET.ACCOUNT:
            self.add_account(data.account.account_id, name, d)
        elif etype == LET.TRUSTLINE:
            tl = data.trust_line
            if tl.asset.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
                d["asset_type"] = "liquidity_pool"
                d["liquidity_pool_id"] = pool_id_hex(tl.asset.liquidity_pool_id)
            else:
                d["asset"] = asset_canonical(tl.asset)
            self.add_account(tl.account_id, name, d)
        elif etype == LET.DATA:
            d["data_name"] = _text(data.data.data_name.string64)
            self.add_muxed(self.source, name, d)
        else:
            d["balance_id"] = claimable_balance_id_hex(data.claimable_balance.balance_id)
            self.add_muxed(self.source, name, d)

    def _signer_sponsorship(self, change) -> None:
        pre, post = change
        if _entry_type(change) != LET.ACCOUNT:
            return
        pre_s = signer_sponsors(pre.data.account) if pre is not None else {}
        post_s = signer_sponsors(post.data.account) if post is not None else {}
        for signer in sorted(set(pre_s) | set(post_s)):
            before, after = pre_s.get(signer), post_s.get(signer)
            if before is None:
                self.add_account(
                    post.data.account.account_id, "signer_sponsorship_created", {"sponsor": after, "signer": signer}
                )
            elif after is None:
                self.add_account(
                    pre.data.account.account_id,
                    "signer_sponsorship_removed",
                    {"former_sponsor": before, "signer": signer},
                )
            elif before != after:
                self.add_account(
                    post.data.account.account_id,
                    "signer_sponsorship_updated",
                    {"former_sponsor": before, "new_sponsor": after, "signer": signer},
                )

    def _pool_created_removed(self, change) -> None:
        pre, post = change
        if _entry_type(change) != LET.LIQUIDITY_POOL:
            return
        if pre is None and post is not None:
            self.add_muxed(
                self.source,
                "liquidity_pool_created",
                {"liquidity_pool": liquidity_pool_details(post.data.liquidity_pool)},
            )
        elif pre is not None and post is None:
            self.add_muxed(
                self.source,
                "liquidity_pool_removed",
                {"liquidity_pool_id": pool_id_hex(pre.data.liquidity_pool.liquidity_pool_id)},
            )


_HANDLERS = {
    OT.CREATE_ACCOUNT: _OperationEffects.create_account,
    OT.PAYMENT: _OperationEffects.payment,
    OT.PATH_PAYMENT_STRICT_RECEIVE: _OperationEffects.path_payment_strict_receive,
    OT.PATH_PAYMENT_STRICT_SEND: _OperationEffects.path_payment_strict_send,
    OT.MANAGE_SELL_OFFER: _OperationEffects.manage_sell_offer,
    OT.MANAGE_BUY_OFFER: _OperationEffects.manage_buy_offer,
    OT.CREATE_PASSIVE_SELL_OFFER: _OperationEffects.create_passive_sell_offer,
    OT.SET_OPTIONS: _OperationEffects.set_options,
    OT.CHANGE_TRUST: _OperationEffects.change_trust,
    OT.ALLOW_TRUST: _OperationEffects.allow_trust,
    OT.ACCOUNT_MERGE: _OperationEffects.account_merge,
    OT.INFLATION: _OperationEffects.inflation,
    OT.MANAGE_DATA: _OperationEffects.manage_data,
    OT.BUMP_SEQUENCE: _OperationEffects.bump_sequence,
    OT.CREATE_CLAIMABLE_BALANCE: _OperationEffects.create_claimable_balance,
    OT.CLAIM_CLAIMABLE_BALANCE: _OperationEffects.claim_claimable_balance,
    OT.CLAWBACK: _OperationEffects.clawback,
    OT.CLAWBACK_CLAIMABLE_BALANCE: _OperationEffects.clawback_claimable_balance,
    OT.SET_TRUST_LINE_FLAGS: _OperationEffects.set_trust_line_flags,
    OT.LIQUIDITY_POOL_DEPOSIT: _OperationEffects.liquidity_pool_deposit,
    OT.LIQUIDITY_POOL_WITHDRAW: _OperationEffects.liquidity_pool_withdraw,
    OT.INVOKE_HOST_FUNCTION: _OperationEffects.invoke_host_function,
    OT.EXTEND_FOOTPRINT_TTL: _OperationEffects.extend_footprint_ttl,
    OT.RESTORE_FOOTPRINT: _OperationEffects.restore_footprint,
}


def _send_amount(success) -> int:
    """Go ``PathPaymentStrictReceiveResult.SendAmount()``: bought amounts of the leading run of claims in
    the first claim's asset, or the last payment's amount when nothing crossed."""
    if not success.offers:
        return success.last.amount.int64
    first = claim_body(success.offers[0]).asset_bought.to_xdr_bytes()
    total = 0
    for claim in success.offers:
        c = claim_body(claim)
        if c.asset_bought.to_xdr_bytes() != first:
            break
        total += c.amount_bought.int64
    return total


def _pool_id_of_params(params: xdr.LiquidityPoolParameters) -> bytes:
    return hashlib.sha256(params.to_xdr_bytes()).digest()


def _cb_clawback_enabled(cb: xdr.ClaimableBalanceEntry) -> bool:
    return cb.ext.v == 1 and bool(cb.ext.v1.flags.uint32 & 1)


def _account_flag_details(d: dict, flags: int, value: bool) -> None:
    for bit, name in (
        (1, "auth_required_flag"),
        (2, "auth_revocable_flag"),
        (4, "auth_immutable_flag"),
        (8, "auth_clawback_enabled_flag"),
    ):
        if flags & bit:
            d[name] = value


def _trustline_flag_details(d: dict, flags: int, value: bool) -> None:
    # "liabilites" is misspelled in Horizon and stellar-etl; kept for compatibility.
    for bit, name in ((1, "authorized_flag"), (2, "authorized_to_maintain_liabilites"), (4, "clawback_enabled_flag")):
        if flags & bit:
            d[name] = value


def transaction_effects(ledger: Ledger, t: Transaction) -> list[dict]:
    """Effect rows of one transaction (none for failed transactions)."""
    if not t.successful:
        return []
    rows = []
    for i, op in enumerate(t.operations):
        op_id = toid(ledger.sequence, t.index, i + 1)
        builder = _OperationEffects(t, i, op, op_id, ledger.protocol_version, ledger.network_passphrase)
        for n, (address, muxed, kind, details) in enumerate(builder.build()):
            rows.append(
                {
                    "id": f"{op_id}-{n}",
                    "operation_id": op_id,
                    "index": n,
                    "address": address,
                    "address_muxed": muxed,
                    "type": EFFECT_TYPES[kind],
                    "type_string": kind,
                    "details": go_json(details),
                    "ledger_sequence": ledger.sequence,
                    "closed_at": ledger.closed_at,
                }
            )
    return rows


@processor(
    "effects",
    schema=EFFECTS_SCHEMA,
    primary_key=("id",),
    description="One row per effect of each operation of a successful transaction (stellar-etl history_effects, "
    "Horizon's effects): account credits/debits, trades and offer updates, trustline, signer, data, sponsorship, "
    "claimable balance, liquidity pool and Soroban (SAC transfer, TTL) effects. details is a JSON object string.",
    config=FilterConfig,
    tags=("core", "effects"),
)
def effects(batch: list[Ledger], config: FilterConfig) -> pa.Table:
    if config.where is not None and not config.where.empty:
        return _python_table(config, batch)
    return native.table("effects", EFFECTS_SCHEMA, batch, (), functools.partial(_python_table, config), _native_hooks)


def _native_hooks(ledgers: list[Ledger]) -> tuple:
    """The native builder's hooks over ``ledgers``: the rows of an operation it leaves to the Python rules (None
    where they skip the transaction), and the Stellar asset a SEP-41 event names (the token_transfers columns of
    it, with those of native and of no asset, and a cache)."""
    from cdp_ray.processors.token_transfers import _NATIVE_COLUMNS, _NO_ASSET, _sac_columns

    def operation_rows(position: int, tx: int, index: int) -> list[tuple] | None:
        ledger = ledgers[position]
        t = ledger.transaction_at(tx)
        op_id = toid(ledger.sequence, t.index, index + 1)
        builder = _OperationEffects(t, index, t.operations[index], op_id, ledger.protocol_version,
                                    ledger.network_passphrase)
        try:
            built = builder.build()
        except EffectError:
            return None
        return [(address, muxed, EFFECT_TYPES[kind], kind, go_json(d)) for address, muxed, kind, d in built]

    return operation_rows, _sac_columns, _NATIVE_COLUMNS, _NO_ASSET, {}


def _python_table(config: FilterConfig, batch: list[Ledger]) -> pa.Table:
    """The table by the Python rules (the reference of the native builder)."""
    rows = []
    for ledger in apply_where(batch, config):
        for t in ledger.transactions:
            try:
                rows += transaction_effects(ledger, t)
            except EffectError as exc:
                # stellar-etl logs the transaction and exports the others.
                log.warning("ledger %d transaction %s: skipping effects: %s", ledger.sequence, t.hash.hex(), exc)
    return table_from_dicts(EFFECTS_SCHEMA, rows)
