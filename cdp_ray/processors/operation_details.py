"""stellar-etl's operation ``details`` map for all 27 operation types.

:func:`operation_details` mirrors ``extractOperationDetails`` in stellar-etl's
``internal/transform/operation.go``: the same keys, the same value types (amounts as float64 units,
``source_amount``/``destination_min`` as 7-place strings, ``asset_id`` FarmHash ids, ``price_r``),
results-dependent values only for successful transactions, and the ``sponsor`` of entries the
operation created. Soroban values follow Go's ``ScVal.String()`` (``parameters_decoded``) and
rs-stellar-xdr's JSON (``parameters_json_decoded``, via :func:`cdp_ray.processors.scval.scval_to_json`).
"""

from __future__ import annotations

import base64
import hashlib

from stellar_sdk import xdr

from cdp_ray.processors.common import (
    NATIVE_ASSET_ID,
    GoFloat,
    account_id,
    amount_string,
    asset_canonical,
    asset_code_from_allow_trust,
    asset_id,
    asset_parts,
    claimable_balance_id_hex,
    claimable_balance_id_strkey,
    contract_strkey,
    g_strkey,
    go_enum_string,
    int128_parts,
    ledger_key_xdr,
    muxed_account,
    pool_id_hex,
    pool_id_strkey,
    price_float,
    sc_address,
    signer_key_address,
    signer_sponsors,
    sponsoring_id,
    stroops_to_real,
)
from cdp_ray.processors.scval import sac_event, scval_to_json
from cdp_ray.xdr import Transaction, fast
from cdp_ray.xdr.fast import raw_xdr

OT = xdr.OperationType
OPERATION_TYPE_NAMES = {t: t.name.lower() for t in OT}
_LCT = xdr.LedgerEntryChangeType


def _real(stroops: int) -> GoFloat:
    """:func:`stroops_to_real` marked as a float of the details map (see :func:`go_json`)."""
    return GoFloat(stroops_to_real(stroops))


# --- operation changes (ingest's GetOperationChanges) ---------------------------------------------------


EntryPair = tuple[xdr.LedgerEntry | None, xdr.LedgerEntry | None]
_CREATED, _UPDATED, _REMOVED, _STATE, _RESTORED = (
    _LCT.LEDGER_ENTRY_CREATED, _LCT.LEDGER_ENTRY_UPDATED, _LCT.LEDGER_ENTRY_REMOVED, _LCT.LEDGER_ENTRY_STATE,
    _LCT.LEDGER_ENTRY_RESTORED,
)


def _operation_group(t: Transaction, index: int, protocol: int) -> xdr.LedgerEntryChanges | None:
    """The ``LedgerEntryChanges`` of operation ``index`` (0-based), None where it has none.

    None for failed transactions (their meta has no operations) and, as in Go's ingest package, for
    ``txINTERNAL_ERROR`` transactions up to protocol 12.
    """
    if protocol <= 12 and t.result_code == xdr.TransactionResultCode.txINTERNAL_ERROR:
        return None
    metas = t.operation_meta()
    return metas[index].changes if index < len(metas) else None


def _pairs(group: xdr.LedgerEntryChanges | None) -> list[EntryPair]:
    """``(pre, post)`` pairs of a group's changes: STATE (or RESTORED) is the pre-state of the next change."""
    if group is None:
        return []
    changes = group.ledger_entry_changes
    out = []
    for i, c in enumerate(changes):
        t = c.type
        if t == _CREATED:
            out.append((None, c.created))
        elif t == _RESTORED:
            out.append((None, c.restored))
        elif t == _UPDATED or t == _REMOVED:
            prev = changes[i - 1]
            pre = prev.state if prev.type == _STATE else prev.restored
            out.append((pre, c.updated if t == _UPDATED else None))
    return out


def operation_changes(t: Transaction, index: int, protocol: int) -> list[EntryPair]:
    """``(pre, post)`` pairs of the ledger entries operation ``index`` (0-based) changed, in meta order
    (empty where :func:`_operation_group` finds no changes)."""
    return _pairs(_operation_group(t, index, protocol))


def _sponsor(op: xdr.Operation, op_type: int, group: xdr.LedgerEntryChanges | None) -> str | None:
    """stellar-etl's ``getSponsor``: the sponsor of a signer or entry the operation (of type ``op_type``,
    so that no other operation's body is read) created.

    Go walks the changes sorted by ledger key and returns the first hit; only the hits need sorting.
    Without a signer, the hits are the sponsored created entries: on fast-engine values they are found
    in C without decoding the changes, which are decoded only to sort two or more.
    """
    if group is None:
        return None
    signer_key = None
    if op_type == OT.SET_OPTIONS and op.body.set_options_op.signer is not None:
        signer_key = signer_key_address(op.body.set_options_op.signer.key)
    else:
        raw = raw_xdr(group)
        if raw is not None:
            sponsors = fast.created_sponsors(raw)
            if len(sponsors) < 2:
                return g_strkey(sponsors[0]) if sponsors else None
    hits = []
    for n, (pre, post) in enumerate(_pairs(group)):
        if post is None:
            continue
        if signer_key is not None and post.data.type == xdr.LedgerEntryType.ACCOUNT:
            post_s = signer_sponsors(post.data.account).get(signer_key)
            if post_s is not None:
                pre_s = signer_sponsors(pre.data.account).get(signer_key) if pre is not None else None
                if pre_s != post_s:
                    hits.append((n, post, post_s))
                    continue
        if pre is None:
            s = sponsoring_id(post)
            if s is not None:
                hits.append((n, post, s))
    if not hits:
        return None
    if len(hits) > 1:
        hits.sort(key=lambda h: (ledger_key_xdr(h[1].data), h[0]))
    return hits[0][2]


# --- detail helpers ---------------------------------------------------------------------------------


def _prefix(p: str) -> str:
    return p + "_" if p else ""


def add_asset(d: dict, asset, prefix: str = "") -> None:
    """``{prefix}_asset_type/_code/_issuer/_id`` of an ``Asset`` (code and issuer omitted for native)."""
    p = _prefix(prefix)
    t, code, issuer = asset_parts(asset)
    d[p + "asset_type"] = t
    if t == "native":
        d[p + "asset_id"] = NATIVE_ASSET_ID
        return
    d[p + "asset_code"] = code
    d[p + "asset_issuer"] = issuer
    d[p + "asset_id"] = asset_id(code, issuer, t)


def _add_asset_no_id(d: dict, asset) -> None:
    t, code, issuer = asset_parts(asset)
    d["asset_type"] = t
    if t != "native":
        d["asset_code"] = code
        d["asset_issuer"] = issuer


def add_account(d: dict, m: xdr.MuxedAccount, prefix: str) -> None:
    """``{prefix}`` (G...), plus ``{prefix}_muxed`` and ``{prefix}_muxed_id`` for muxed accounts."""
    base, muxed = muxed_account(m)
    d[prefix] = base
    if muxed is not None:
        d[prefix + "_muxed"] = muxed
        d[prefix + "_muxed_id"] = m.med25519.id.uint64


def add_price(d: dict, price: xdr.Price, prefix: str = "") -> None:
    p = _prefix(prefix)
    n, den = price.n.int32, price.d.int32
    d[p + "price"] = GoFloat(price_float(n, den))
    d[p + "price_r"] = {"n": n, "d": den}


_ACCOUNT_FLAGS = ((1, "auth_required"), (2, "auth_revocable"), (4, "auth_immutable"), (8, "auth_clawback_enabled"))
_TRUSTLINE_FLAGS = ((1, "authorized"), (2, "authorized_to_maintain_liabilities"), (4, "clawback_enabled"))


def _add_flags(d: dict, flags: int, table, prefix: str) -> None:
    hits = [(bit, name) for bit, name in table if flags & bit]
    d[prefix + "_flags"] = [b for b, _ in hits]
    d[prefix + "_flags_s"] = [n for _, n in hits]


def _path(assets) -> list | None:
    if not assets:
        return None
    out = []
    for a in assets:
        t, code, issuer = asset_parts(a)
        out.append({"asset_code": code, "asset_issuer": issuer, "asset_type": t})
    return out


def _civil(epoch: int) -> tuple[int, int, int, int, int, int]:
    """UTC ``(year, month, day, hour, minute, second)`` of a Unix time, for any year (proleptic Gregorian)."""
    days, secs = divmod(epoch, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return year, month, day, secs // 3600, secs // 60 % 60, secs % 60


def _rfc3339(epoch: int) -> str:
    """Go's RFC 3339 JSON time of a Unix time (``+`` before years past 9999, as Horizon's ``iso8601Time``)."""
    y, mo, d, h, mi, s = _civil(epoch)
    return f"{'+' if y > 9999 else ''}{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"


def claim_predicate_json(p: xdr.ClaimPredicate) -> dict:
    """Go's JSON of an ``xdr.ClaimPredicate`` (Horizon's ``and``/``or``/``not``/``abs_before``/``rel_before``)."""
    T = xdr.ClaimPredicateType
    if p.type == T.CLAIM_PREDICATE_UNCONDITIONAL:
        return {"unconditional": True}
    if p.type == T.CLAIM_PREDICATE_AND:
        return {"and": [claim_predicate_json(x) for x in p.and_predicates]}
    if p.type == T.CLAIM_PREDICATE_OR:
        return {"or": [claim_predicate_json(x) for x in p.or_predicates]}
    if p.type == T.CLAIM_PREDICATE_NOT:
        return {"not": claim_predicate_json(p.not_predicate) if p.not_predicate is not None else {}}
    if p.type == T.CLAIM_PREDICATE_BEFORE_ABSOLUTE_TIME:
        epoch = p.abs_before.int64
        return {"abs_before": _rfc3339(epoch), "abs_before_epoch": str(epoch)}
    return {"rel_before": str(p.rel_before.int64)}


def _claimants(claimants) -> list[dict] | None:
    out = [
        {"destination": account_id(c.v0.destination), "predicate": claim_predicate_json(c.v0.predicate)}
        for c in claimants
    ]
    return out or None


def _ledger_key_details(d: dict, key: xdr.LedgerKey) -> None:
    T = xdr.LedgerEntryType
    t = key.type
    if t == T.ACCOUNT:
        d["account_id"] = account_id(key.account.account_id)
    elif t == T.CLAIMABLE_BALANCE:
        bid = key.claimable_balance.balance_id
        d["claimable_balance_id"] = claimable_balance_id_hex(bid)
        d["claimable_balance_id_strkey"] = claimable_balance_id_strkey(bid)
    elif t == T.DATA:
        d["data_account_id"] = account_id(key.data.account_id)
        d["data_name"] = key.data.data_name.string64.decode("utf-8", "replace")
    elif t == T.OFFER:
        d["offer_id"] = key.offer.offer_id.int64
    elif t == T.TRUSTLINE:
        tl = key.trust_line
        d["trustline_account_id"] = account_id(tl.account_id)
        if tl.asset.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
            d["trustline_liquidity_pool_id"] = pool_id_hex(tl.asset.liquidity_pool_id)
            d["trustline_liquidity_pool_id_strkey"] = pool_id_strkey(tl.asset.liquidity_pool_id)
        else:
            d["trustline_asset"] = asset_canonical(tl.asset)
    elif t == T.LIQUIDITY_POOL:
        pid = key.liquidity_pool.liquidity_pool_id
        d["liquidity_pool_id"] = pool_id_hex(pid)
        d["liquidity_pool_id_strkey"] = pool_id_strkey(pid)


def _pool_params_id(params: xdr.LiquidityPoolParameters) -> bytes:
    """``PoolID`` of constant-product parameters: sha256 of their XDR."""
    return hashlib.sha256(params.to_xdr_bytes()).digest()


def _pool_delta(changes, pool_id: bytes):
    """``(params, dA, dB, dShares)`` of the pool's change in the operation's changes, or None."""
    for pre, post in changes:
        entry = post if post is not None else pre
        if entry.data.type != xdr.LedgerEntryType.LIQUIDITY_POOL:
            continue
        if entry.data.liquidity_pool.liquidity_pool_id.pool_id.hash != pool_id:
            continue
        a0 = b0 = s0 = a1 = b1 = s1 = 0
        if pre is not None:
            cp = pre.data.liquidity_pool.body.constant_product
            a0, b0, s0 = cp.reserve_a.int64, cp.reserve_b.int64, cp.total_pool_shares.int64
        if post is not None:
            cp = post.data.liquidity_pool.body.constant_product
            a1, b1, s1 = cp.reserve_a.int64, cp.reserve_b.int64, cp.total_pool_shares.int64
        params = entry.data.liquidity_pool.body.constant_product.params
        return params, a1 - a0, b1 - b0, s1 - s0
    return None


_NATIVE = xdr.Asset(type=xdr.AssetType.ASSET_TYPE_NATIVE)


def _send_amount(res: xdr.PathPaymentStrictReceiveResult) -> int:
    """Go ``PathPaymentStrictReceiveResult.SendAmount()``."""
    s = res.success
    if s is None:
        return 0
    if not s.offers:
        return s.last.amount.int64
    first = _atom(s.offers[0])[0].to_xdr_bytes()
    total = 0
    for o in s.offers:
        bought, amount = _atom(o)
        if bought.to_xdr_bytes() != first:
            break
        total += amount
    return total


def _atom(a: xdr.ClaimAtom) -> tuple[xdr.Asset, int]:
    body = a.v0 or a.order_book or a.liquidity_pool
    return body.asset_bought, body.amount_bought.int64


def _op_result_tr(t: Transaction, index: int):
    results = t.operation_results
    return results[index].tr if index < len(results) else None


# --- Soroban ----------------------------------------------------------------------------------------


def _soroban_data(t: Transaction) -> xdr.SorobanTransactionData | None:
    tx = t.tx
    ext = getattr(tx, "ext", None)
    return ext.soroban_data if ext is not None and ext.v == 1 else None


def _ledger_key_hashes(t: Transaction) -> list[str] | None:
    data = _soroban_data(t)
    if data is None:
        return None
    fp = data.resources.footprint
    out = [hashlib.sha256(k.to_xdr_bytes()).hexdigest() for k in list(fp.read_only) + list(fp.read_write)]
    return out or None


def _footprint_contract_id(t: Transaction) -> str:
    data = _soroban_data(t)
    if data is None:
        return ""
    fp = data.resources.footprint
    for key in list(fp.read_write) + list(fp.read_only):
        if key.type == xdr.LedgerEntryType.CONTRACT_DATA:
            c = key.contract_data.contract
            if c.type == xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
                return contract_strkey(c.contract_id)
    return ""


_SCV = xdr.SCValType
_SCV_ARM = {
    _SCV.SCV_BOOL: "B", _SCV.SCV_VOID: "", _SCV.SCV_ERROR: "Error", _SCV.SCV_U32: "U32", _SCV.SCV_I32: "I32",
    _SCV.SCV_U64: "U64", _SCV.SCV_I64: "I64", _SCV.SCV_TIMEPOINT: "Timepoint", _SCV.SCV_DURATION: "Duration",
    _SCV.SCV_U128: "U128", _SCV.SCV_I128: "I128", _SCV.SCV_U256: "U256", _SCV.SCV_I256: "I256",
    _SCV.SCV_BYTES: "Bytes", _SCV.SCV_STRING: "Str", _SCV.SCV_SYMBOL: "Sym", _SCV.SCV_VEC: "Vec",
    _SCV.SCV_MAP: "Map", _SCV.SCV_ADDRESS: "Address", _SCV.SCV_CONTRACT_INSTANCE: "Instance",
    _SCV.SCV_LEDGER_KEY_CONTRACT_INSTANCE: "", _SCV.SCV_LEDGER_KEY_NONCE: "NonceKey",
}


def _u128(p) -> int:
    return (p.hi.uint64 << 64) | p.lo.uint64


def _i128(p) -> int:
    return int128_parts(p.hi.int64, p.lo.uint64)


def _u256(p) -> int:
    return (p.hi_hi.uint64 << 192) | (p.hi_lo.uint64 << 128) | (p.lo_hi.uint64 << 64) | p.lo_lo.uint64


def _i256(p) -> int:
    return (p.hi_hi.int64 << 192) | (p.hi_lo.uint64 << 128) | (p.lo_hi.uint64 << 64) | p.lo_lo.uint64


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def scval_string(v: xdr.SCVal) -> str:
    """Go's ``xdr.ScVal.String()`` (stellar-etl's ``parameters_decoded`` values)."""
    t = v.type
    if t == _SCV.SCV_BOOL:
        return "true" if v.b else "false"
    if t == _SCV.SCV_VOID:
        return "(void)"
    if t == _SCV.SCV_ERROR:
        e = v.error
        if e.type == xdr.SCErrorType.SCE_CONTRACT:
            return f"{go_enum_string(e.type)}({e.contract_code.uint32})"
        return f"{go_enum_string(e.type)}({go_enum_string(e.code)})"
    if t == _SCV.SCV_U32:
        return str(v.u32.uint32)
    if t == _SCV.SCV_I32:
        return str(v.i32.int32)
    if t == _SCV.SCV_U64:
        return str(v.u64.uint64)
    if t == _SCV.SCV_I64:
        return str(v.i64.int64)
    if t == _SCV.SCV_TIMEPOINT:
        return _go_time_string(v.timepoint.time_point.uint64)
    if t == _SCV.SCV_DURATION:
        return str(v.duration.duration.uint64)
    if t == _SCV.SCV_U128:
        return str(_u128(v.u128))
    if t == _SCV.SCV_I128:
        return str(_i128(v.i128))
    if t == _SCV.SCV_U256:
        return str(_u256(v.u256))
    if t == _SCV.SCV_I256:
        return str(_i256(v.i256))
    if t == _SCV.SCV_BYTES:
        return v.bytes.sc_bytes.hex()
    if t == _SCV.SCV_STRING:
        return _text(v.str.sc_string)
    if t == _SCV.SCV_SYMBOL:
        return _text(v.sym.sc_symbol)
    if t == _SCV.SCV_VEC:
        if v.vec is None:
            return "nil"
        return "[" + " ".join(scval_string(x) for x in v.vec.sc_vec) + "]"
    if t == _SCV.SCV_MAP:
        if v.map is None:
            return "nil"
        return "[" + " ".join(f"{{{scval_string(e.key)} {scval_string(e.val)}}}" for e in v.map.sc_map) + "]"
    if t == _SCV.SCV_ADDRESS:
        return sc_address(v.address)
    if t == _SCV.SCV_CONTRACT_INSTANCE:
        ex = v.instance.executable
        sac = ex.type == xdr.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET
        out = "(StellarAssetContract)" if sac else ex.wasm_hash.hash.hex()
        storage = v.instance.storage
        if storage is not None and storage.sc_map:
            out += ": [" + " ".join(f"{{{scval_string(e.key)} {scval_string(e.val)}}}" for e in storage.sc_map) + "]"
        return out
    if t == _SCV.SCV_LEDGER_KEY_CONTRACT_INSTANCE:
        return "(LedgerKeyContractInstance)"
    if t == _SCV.SCV_LEDGER_KEY_NONCE:
        n = v.nonce_key.nonce.int64  # Go formats the ScNonceKey struct with %X: "{1F}", "{-1F}"
        return f"{{{'-' if n < 0 else ''}{abs(n):X}}}"
    return "unknown"


def _go_time_string(epoch: int) -> str:
    """Go's ``time.Unix(epoch, 0).String()`` in UTC (the zone stellar-etl runs in)."""
    y, mo, d, h, mi, s = _civil(epoch)
    return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} +0000 UTC"


def _parameters(args: list[xdr.SCVal]) -> tuple[list, list, list, list]:
    params, decoded, as_b64, as_json = [], [], [], []
    for a in args:
        raw = base64.b64encode(a.to_xdr_bytes()).decode()
        arm = _SCV_ARM.get(a.type, "n/a")
        params.append({"type": arm, "value": raw})
        decoded.append({"type": arm, "value": scval_string(a)})
        as_b64.append(raw)
        as_json.append(scval_to_json(a))
    return params, decoded, as_b64, as_json


def _preimage_details(pre: xdr.ContractIDPreimage) -> dict:
    if pre.type == xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS:
        return {"from": "address", "address": sc_address(pre.from_address.address)}
    return {"from": "asset", "asset": asset_canonical(pre.from_asset)}


def sac_balance_changes(t: Transaction, network_passphrase: str | None) -> list[dict]:
    """stellar-etl's ``asset_balance_changes``: Stellar Asset Contract transfer/mint/clawback/burn events
    found in the transaction's diagnostic events (successful contract calls only)."""
    meta = t.meta
    if meta.v == 3:
        events = meta.v3.soroban_meta.diagnostic_events if meta.v3.soroban_meta is not None else []
    elif meta.v == 4:
        events = meta.v4.diagnostic_events or []
    else:
        events = []
    out: list[dict] = []
    for de in events:
        parsed = sac_event(de.event, network_passphrase) if de.in_successful_contract_call else None
        if parsed is None:
            continue
        fn, asset, frm, to, amount = parsed
        change: dict = {}
        if frm:
            change["from"] = frm
        if to:
            change["to"] = to
        change["type"] = fn
        change["amount"] = amount_string(amount)
        _add_asset_no_id(change, asset)
        out.append(change)
    return out


# --- the details map ---------------------------------------------------------------------------------

try:
    from cdp_ray.processors import _details
except ImportError:  # the C extension was not built: every map is built in Python
    read_operation = None
else:
    _details.setup(GoFloat, asset_id, lambda raw: claim_predicate_json(fast.decode("ClaimPredicate", raw)))
    #: ``read_operation(op_xdr, tx_source_xdr, result_xdr, successful)``: what the operations table needs of
    #: an operation, read from its XDR in C, the common classic operations' details maps included (see
    #: ``_details.c``); None without the extension.
    read_operation = _details.operation


def operation_details(
    op: xdr.Operation, index: int, t: Transaction, protocol: int, network_passphrase: str | None
) -> dict:
    """stellar-etl's ``details`` of operation ``index`` (0-based) of transaction ``t``, by the Python rules
    (the operations table reads the common classic operations' maps from their XDR in C: :data:`read_operation`)."""
    return complete_details(None, op, op.body.type, index, t, protocol, network_passphrase)


def complete_details(
    d: dict | None,
    op: xdr.Operation,
    op_type: int,
    index: int,
    t: Transaction,
    protocol: int,
    network_passphrase: str | None,
) -> dict:
    """The details map of operation ``index`` of type ``op_type``: ``d`` (a map :data:`read_operation` built),
    else the Python rules' map, with the sponsor added."""
    group = _operation_group(t, index, protocol)  # decoded only where a detail needs it
    if d is None:
        source = op.source_account if op.source_account is not None else transaction_source(t)
        d = details_in_python(op.body, source, index, t, group, network_passphrase)
    sponsor = _sponsor(op, op_type, group)
    if sponsor is not None:
        d["sponsor"] = sponsor
    return d


def details_in_python(
    body: xdr.OperationBody,
    source: xdr.MuxedAccount,
    index: int,
    t: Transaction,
    group: xdr.LedgerEntryChanges | None,
    network_passphrase: str | None,
) -> dict:
    """:func:`operation_details` less the sponsor, for an operation ``body`` with source ``source``."""
    d: dict = {}
    ty = body.type
    ok = t.successful

    if ty == OT.CREATE_ACCOUNT:
        o = body.create_account_op
        add_account(d, source, "funder")
        d["account"] = account_id(o.destination)
        d["starting_balance"] = _real(o.starting_balance.int64)
    elif ty == OT.PAYMENT:
        o = body.payment_op
        add_account(d, source, "from")
        add_account(d, o.destination, "to")
        d["amount"] = _real(o.amount.int64)
        add_asset(d, o.asset)
    elif ty == OT.PATH_PAYMENT_STRICT_RECEIVE:
        o = body.path_payment_strict_receive_op
        add_account(d, source, "from")
        add_account(d, o.destination, "to")
        d["amount"] = _real(o.dest_amount.int64)
        d["source_amount"] = amount_string(0)
        d["source_max"] = _real(o.send_max.int64)
        add_asset(d, o.dest_asset)
        add_asset(d, o.send_asset, "source")
        if ok:
            res = _op_result_tr(t, index).path_payment_strict_receive_result
            d["source_amount"] = _real(_send_amount(res))
        d["path"] = _path(o.path)
    elif ty == OT.PATH_PAYMENT_STRICT_SEND:
        o = body.path_payment_strict_send_op
        add_account(d, source, "from")
        add_account(d, o.destination, "to")
        d["amount"] = amount_string(0)
        d["source_amount"] = _real(o.send_amount.int64)
        d["destination_min"] = amount_string(o.dest_min.int64)
        add_asset(d, o.dest_asset)
        add_asset(d, o.send_asset, "source")
        if ok:
            res = _op_result_tr(t, index).path_payment_strict_send_result
            d["amount"] = _real(res.success.last.amount.int64 if res.success is not None else 0)
        d["path"] = _path(o.path)
    elif ty in (OT.MANAGE_BUY_OFFER, OT.MANAGE_SELL_OFFER, OT.CREATE_PASSIVE_SELL_OFFER):
        if ty == OT.MANAGE_BUY_OFFER:
            o = body.manage_buy_offer_op
            d["offer_id"] = o.offer_id.int64
            d["amount"] = _real(o.buy_amount.int64)
        elif ty == OT.MANAGE_SELL_OFFER:
            o = body.manage_sell_offer_op
            d["offer_id"] = o.offer_id.int64
            d["amount"] = _real(o.amount.int64)
        else:
            o = body.create_passive_sell_offer_op
            d["amount"] = _real(o.amount.int64)
        add_price(d, o.price)
        add_asset(d, o.buying, "buying")
        add_asset(d, o.selling, "selling")
    elif ty == OT.SET_OPTIONS:
        _set_options(d, body.set_options_op)
    elif ty == OT.CHANGE_TRUST:
        o = body.change_trust_op
        if o.line.type == xdr.AssetType.ASSET_TYPE_POOL_SHARE:
            d["asset_type"] = "liquidity_pool_shares"
            pid = _pool_params_id(o.line.liquidity_pool)
            d["liquidity_pool_id"] = pid.hex()
            d["liquidity_pool_id_strkey"] = pool_id_strkey(xdr.Hash(pid))
        else:
            add_asset(d, o.line)
            d["trustee"] = d.get("asset_issuer")
        add_account(d, source, "trustor")
        d["limit"] = _real(o.limit.int64)
    elif ty == OT.ALLOW_TRUST:
        o = body.allow_trust_op
        issuer = muxed_account(source)[0]
        t_, code, iss = asset_code_from_allow_trust(o.asset, issuer)
        d["asset_type"], d["asset_code"], d["asset_issuer"] = t_, code, iss
        d["asset_id"] = asset_id(code, iss, t_)
        add_account(d, source, "trustee")
        d["trustor"] = account_id(o.trustor)
        auth = o.authorize.uint32
        d["authorize"] = bool(auth & 1)
        if auth & 2:
            d["authorize_to_maintain_liabilities"] = True
        if auth & 4:
            d["clawback_enabled"] = True
    elif ty == OT.ACCOUNT_MERGE:
        add_account(d, source, "account")
        add_account(d, body.destination, "into")
    elif ty == OT.INFLATION:
        pass
    elif ty == OT.MANAGE_DATA:
        o = body.manage_data_op
        d["name"] = o.data_name.string64.decode("utf-8", "replace")
        d["value"] = base64.b64encode(o.data_value.data_value).decode() if o.data_value is not None else None
    elif ty == OT.BUMP_SEQUENCE:
        d["bump_to"] = str(body.bump_sequence_op.bump_to.sequence_number.int64)
    elif ty == OT.CREATE_CLAIMABLE_BALANCE:
        o = body.create_claimable_balance_op
        d["asset"] = asset_canonical(o.asset)
        d["amount"] = _real(o.amount.int64)
        d["claimants"] = _claimants(o.claimants)
    elif ty == OT.CLAIM_CLAIMABLE_BALANCE:
        bid = body.claim_claimable_balance_op.balance_id
        d["balance_id"] = claimable_balance_id_hex(bid)
        d["balance_id_strkey"] = claimable_balance_id_strkey(bid)
        add_account(d, source, "claimant")
    elif ty == OT.BEGIN_SPONSORING_FUTURE_RESERVES:
        d["sponsored_id"] = account_id(body.begin_sponsoring_future_reserves_op.sponsored_id)
    elif ty == OT.END_SPONSORING_FUTURE_RESERVES:
        begin_source = _begin_sponsor_source(t, index, source)
        if begin_source is not None:
            add_account(d, begin_source, "begin_sponsor")
    elif ty == OT.REVOKE_SPONSORSHIP:
        o = body.revoke_sponsorship_op
        if o.type == xdr.RevokeSponsorshipType.REVOKE_SPONSORSHIP_LEDGER_ENTRY:
            _ledger_key_details(d, o.ledger_key)
        else:
            d["signer_account_id"] = account_id(o.signer.account_id)
            d["signer_key"] = signer_key_address(o.signer.signer_key)
    elif ty == OT.CLAWBACK:
        o = body.clawback_op
        add_asset(d, o.asset)
        add_account(d, o.from_, "from")
        d["amount"] = _real(o.amount.int64)
    elif ty == OT.CLAWBACK_CLAIMABLE_BALANCE:
        bid = body.clawback_claimable_balance_op.balance_id
        d["balance_id"] = claimable_balance_id_hex(bid)
        d["balance_id_strkey"] = claimable_balance_id_strkey(bid)
    elif ty == OT.SET_TRUST_LINE_FLAGS:
        o = body.set_trust_line_flags_op
        d["trustor"] = account_id(o.trustor)
        add_asset(d, o.asset)
        if o.set_flags.uint32 > 0:
            _add_flags(d, o.set_flags.uint32, _TRUSTLINE_FLAGS, "set")
        if o.clear_flags.uint32 > 0:
            _add_flags(d, o.clear_flags.uint32, _TRUSTLINE_FLAGS, "clear")
    elif ty == OT.LIQUIDITY_POOL_DEPOSIT:
        o = body.liquidity_pool_deposit_op
        _pool_id(d, o.liquidity_pool_id)
        asset_a = asset_b = _NATIVE
        da = db = shares = 0
        delta = _pool_delta(_pairs(group), o.liquidity_pool_id.pool_id.hash) if ok else None
        if delta is not None:
            params, da, db, shares = delta
            asset_a, asset_b = params.asset_a, params.asset_b
        add_asset(d, asset_a, "reserve_a")
        d["reserve_a_max_amount"] = _real(o.max_amount_a.int64)
        d["reserve_a_deposit_amount"] = _real(da)
        add_asset(d, asset_b, "reserve_b")
        d["reserve_b_max_amount"] = _real(o.max_amount_b.int64)
        d["reserve_b_deposit_amount"] = _real(db)
        add_price(d, o.min_price, "min")
        add_price(d, o.max_price, "max")
        d["shares_received"] = _real(shares)
    elif ty == OT.LIQUIDITY_POOL_WITHDRAW:
        o = body.liquidity_pool_withdraw_op
        _pool_id(d, o.liquidity_pool_id)
        asset_a = asset_b = _NATIVE
        ra = rb = 0
        delta = _pool_delta(_pairs(group), o.liquidity_pool_id.pool_id.hash) if ok else None
        if delta is not None:
            params, da, db, _ = delta
            asset_a, asset_b = params.asset_a, params.asset_b
            ra, rb = -da, -db
        add_asset(d, asset_a, "reserve_a")
        d["reserve_a_min_amount"] = _real(o.min_amount_a.int64)
        d["reserve_a_withdraw_amount"] = _real(ra)
        add_asset(d, asset_b, "reserve_b")
        d["reserve_b_min_amount"] = _real(o.min_amount_b.int64)
        d["reserve_b_withdraw_amount"] = _real(rb)
        d["shares"] = _real(o.amount.int64)
    elif ty == OT.INVOKE_HOST_FUNCTION:
        _invoke_host_function(d, body.invoke_host_function_op.host_function, t, network_passphrase)
    elif ty == OT.EXTEND_FOOTPRINT_TTL:
        d["type"] = "extend_footprint_ttl"
        d["extend_to"] = body.extend_footprint_ttl_op.extend_to.uint32
        d["ledger_key_hash"] = _ledger_key_hashes(t)
        d["contract_id"] = _footprint_contract_id(t)
        d["contract_code_hash"] = None
    elif ty == OT.RESTORE_FOOTPRINT:
        d["type"] = "restore_footprint"
        d["ledger_key_hash"] = _ledger_key_hashes(t)
        d["contract_id"] = _footprint_contract_id(t)
        d["contract_code_hash"] = None
    else:
        raise ValueError(f"unknown operation type {ty!r}")
    return d


def transaction_source(t: Transaction) -> xdr.MuxedAccount:
    """Source account of the (inner) transaction as a ``MuxedAccount`` (v0 envelopes included)."""
    tx = t.tx
    if hasattr(tx, "source_account"):
        return tx.source_account
    return xdr.MuxedAccount(type=xdr.CryptoKeyType.KEY_TYPE_ED25519, ed25519=tx.source_account_ed25519)


def _pool_id(d: dict, pid: xdr.PoolID) -> None:
    d["liquidity_pool_id"] = pool_id_hex(pid)
    d["liquidity_pool_id_strkey"] = pool_id_strkey(pid)


def _set_options(d: dict, o: xdr.SetOptionsOp) -> None:
    if o.inflation_dest is not None:
        d["inflation_dest"] = account_id(o.inflation_dest)
    if o.set_flags is not None and o.set_flags.uint32 > 0:
        _add_flags(d, o.set_flags.uint32, _ACCOUNT_FLAGS, "set")
    if o.clear_flags is not None and o.clear_flags.uint32 > 0:
        _add_flags(d, o.clear_flags.uint32, _ACCOUNT_FLAGS, "clear")
    if o.master_weight is not None:
        d["master_key_weight"] = o.master_weight.uint32
    if o.low_threshold is not None:
        d["low_threshold"] = o.low_threshold.uint32
    if o.med_threshold is not None:
        d["med_threshold"] = o.med_threshold.uint32
    if o.high_threshold is not None:
        d["high_threshold"] = o.high_threshold.uint32
    if o.home_domain is not None:
        d["home_domain"] = o.home_domain.string32.decode("utf-8", "replace")
    if o.signer is not None:
        d["signer_key"] = signer_key_address(o.signer.key)
        d["signer_weight"] = o.signer.weight.uint32


def _begin_sponsor_source(t: Transaction, index: int, source: xdr.MuxedAccount) -> xdr.MuxedAccount | None:
    """Source of the closest earlier BEGIN_SPONSORING_FUTURE_RESERVES naming this operation's source."""
    if not t.successful:
        return None
    sponsoree = muxed_account(source)[0]
    ops = t.operations
    for i in range(index - 1, -1, -1):
        prev = ops[i]
        if prev.body.type == OT.BEGIN_SPONSORING_FUTURE_RESERVES and (
            account_id(prev.body.begin_sponsoring_future_reserves_op.sponsored_id) == sponsoree
        ):
            return prev.source_account if prev.source_account is not None else transaction_source(t)
    return None


def _invoke_host_function(d: dict, hf: xdr.HostFunction, t: Transaction, network_passphrase: str | None) -> None:
    HT = xdr.HostFunctionType
    d["function"] = go_enum_string(hf.type)
    if hf.type == HT.HOST_FUNCTION_TYPE_INVOKE_CONTRACT:
        ic = hf.invoke_contract
        args = [
            xdr.SCVal(type=_SCV.SCV_ADDRESS, address=ic.contract_address),
            xdr.SCVal(type=_SCV.SCV_SYMBOL, sym=ic.function_name),
            *ic.args,
        ]
        d["type"] = "invoke_contract"
        d["ledger_key_hash"] = _ledger_key_hashes(t)
        d["contract_id"] = sc_address(ic.contract_address)
        d["contract_code_hash"] = None
        d["parameters"], d["parameters_decoded"], d["parameters_json"], d["parameters_json_decoded"] = _parameters(args)
        d["asset_balance_changes"] = sac_balance_changes(t, network_passphrase)
    elif hf.type in (HT.HOST_FUNCTION_TYPE_CREATE_CONTRACT, HT.HOST_FUNCTION_TYPE_CREATE_CONTRACT_V2):
        v2 = hf.type == HT.HOST_FUNCTION_TYPE_CREATE_CONTRACT_V2
        args = hf.create_contract_v2 if v2 else hf.create_contract
        d["type"] = "create_contract_v2" if v2 else "create_contract"
        d["ledger_key_hash"] = _ledger_key_hashes(t)
        d["contract_id"] = _footprint_contract_id(t)
        d["contract_code_hash"] = None
        if v2:
            d["parameters"], d["parameters_decoded"], d["parameters_json"], d["parameters_json_decoded"] = _parameters(
                list(args.constructor_args)
            )
        d.update(_preimage_details(args.contract_id_preimage))
    else:
        d["type"] = "upload_wasm"
        d["ledger_key_hash"] = _ledger_key_hashes(t)
        d["contract_code_hash"] = None
