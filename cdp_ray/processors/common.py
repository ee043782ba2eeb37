"""Helpers shared by processors: ids, strkeys, XDR enum names, assets, amounts and prices (stellar-etl conventions)."""

from __future__ import annotations

import binascii
import functools
import json
import math
import re
from decimal import Decimal

import farmhash
import orjson
import pyarrow as pa
from stellar_sdk import xdr

TIMESTAMP = pa.timestamp("us", tz="UTC")


def toid(ledger: int, tx_index: int = 0, op_index: int = 0) -> int:
    """stellar-etl / Horizon total order id: ``ledger << 32 | tx_index << 12 | op_index``."""
    return (ledger << 32) | (tx_index << 12) | op_index


def b64(value) -> str:
    """Base64 of an XDR value."""
    return binascii.b2a_base64(value.to_xdr_bytes(), newline=False).decode()


def g_strkey(raw: bytes) -> str:
    """``G...`` strkey of a raw ed25519 key."""
    return strkey("G", raw)


def account_id(pk: xdr.PublicKey | xdr.AccountID) -> str:
    """``G...`` strkey of an ``AccountID`` / ``PublicKey`` / ``NodeID``."""
    key = getattr(pk, "account_id", pk)
    key = getattr(key, "node_id", key)
    return g_strkey(key.ed25519.uint256)


_KEY_ED25519 = xdr.CryptoKeyType.KEY_TYPE_ED25519


def muxed_account(m: xdr.MuxedAccount) -> tuple[str, str | None]:
    """``(G... base account, M... muxed address or None)`` of a ``MuxedAccount``."""
    if m.type is _KEY_ED25519:
        return strkey("G", m.ed25519.uint256), None
    med = m.med25519
    base = g_strkey(med.ed25519.uint256)
    return base, strkey("M", med.ed25519.uint256 + med.id.uint64.to_bytes(8, "big"))


def _go_case(name: str) -> str:
    return "".join(p[:1].upper() + p[1:].lower() for p in name.split("_"))


def go_enum_name(value, prefix: str) -> str:
    """Go's ``String()`` of an XDR enum, e.g. ``LedgerEntryType.CONTRACT_DATA`` -> ``LedgerEntryTypeContractData``."""
    return prefix + _go_case(value.name)


# --- Go-compatible JSON ---------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_HTML = re.compile("[<>&\u2028\u2029]")


def go_float(value: float) -> str:
    """Go's ``encoding/json`` spelling of a float64: shortest digits, fixed notation from 1e-6 to 1e21
    (``10`` for 10.0, ``0.0000511``), else exponent notation without a leading exponent zero (``1e-7``)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = repr(value)
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{'-' + exponent[2:] if exponent.startswith('-0') else exponent}"
    if "e" in text:
        text = format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def _go_number(match: re.Match) -> str:
    token = match.group()
    if token[0] == '"' or not ("." in token or "e" in token or "E" in token):
        return token
    return go_float(float(token))


_go_float_cached = functools.lru_cache(maxsize=4096)(go_float)


class GoFloat(float):
    """A float64 bound for :func:`go_json` (the details maps' amounts and prices): written in Go's spelling
    straight from the encoder, so ``go_json(..., floats_marked=True)`` need not search the value for floats."""

    __slots__ = ()


def _go_floats(value):
    """``value`` with every plain float replaced by an ``orjson.Fragment`` of its Go spelling."""
    t = type(value)
    if t is float:
        return orjson.Fragment(_go_float_cached(value))
    if t is dict:
        return {k: _go_floats(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if t is list or t is tuple:
        return [_go_floats(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = frozenset((float, dict, list, tuple))


def _go_float_fragment(value):
    if type(value) is GoFloat:
        return orjson.Fragment(_go_float_cached(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def go_json(value, *, floats_marked: bool = False) -> str:
    """JSON text as Go's ``json.Marshal`` writes a ``map[string]interface{}``: keys sorted, no spaces, UTF-8,
    floats spelled as Go spells them and ``<``, ``>``, ``&``, U+2028/U+2029 escaped (stellar-etl's details).

    ``floats_marked``: every float in ``value`` is a :class:`GoFloat`, so it is not walked to find them."""
    try:
        text = orjson.dumps(
            value if floats_marked else _go_floats(value), default=_go_float_fragment, option=orjson.OPT_SORT_KEYS
        ).decode()
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits
        text = _JSON_TOKEN.sub(_go_number, json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = _GO_HTML.sub(lambda m: _GO_HTML_ESCAPES[m.group()], text)
    return text


# --- Go-compatible names --------------------------------------------------------------------------

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+")


@functools.lru_cache(maxsize=4096)
def go_name(name: str) -> str:
    """Go (xdrgen) spelling of an XDR identifier: ``ExtendFootprintTTLResultCode`` -> ``ExtendFootprintTtlResultCode``,
    ``opINNER`` -> ``OpInner``, ``MEMO_NONE`` -> ``MemoNone``."""
    return "".join(w[:1].upper() + w[1:].lower() for w in _WORD.findall(name))


def go_enum_string(value) -> str:
    """Go's ``String()`` of any stellar_sdk XDR enum value, e.g. ``OperationResultCode.opINNER`` ->
    ``OperationResultCodeOpInner``, ``MemoType.MEMO_NONE`` -> ``MemoTypeMemoNone`` (cached per member)."""
    return _go_enum_string(type(value), value)


@functools.lru_cache(maxsize=4096)
def _go_enum_string(cls: type, value) -> str:
    # keyed by class too: the SDK's enums are IntEnums, equal members of different enums compare equal
    return go_name(cls.__name__) + go_name(value.name)


# --- strkeys ------------------------------------------------------------------------------------------

_STRKEY_VERSION = {
    "G": 6 << 3, "M": 12 << 3, "T": 19 << 3, "X": 23 << 3, "P": 15 << 3, "C": 2 << 3, "L": 11 << 3, "B": 1 << 3
}


_B32_PAIRS = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"]
_B32_SHIFTS = {n: range(n * 8 - 10, -1, -10) for n in range(5, 125, 5)}


def _b32_unpadded(data: bytes) -> str:
    """RFC 4648 base32 of ``data`` without ``=`` padding, 10 bits per table lookup (the stdlib's is 5x slower)."""
    n = len(data)
    padded = n + (-n % 5)
    shifts = _B32_SHIFTS.get(padded) or range(padded * 8 - 10, -1, -10)
    v = int.from_bytes(data, "big") << ((padded - n) * 8)
    text = "".join([_B32_PAIRS[(v >> s) & 1023] for s in shifts])
    return text[: (n * 8 + 4) // 5]


def _crc16_xmodem(data: bytes) -> int:
    """CRC16-XModem (poly 0x1021, init 0), the strkey checksum: ``binascii.crc_hqx`` computes it in C."""
    return binascii.crc_hqx(data, 0)


def _encode_strkey_py(version: int, payload: bytes) -> str:
    """Strkey text of a version byte and payload in pure Python (when the C extension is not built)."""
    raw = bytes((version,)) + payload
    return _b32_unpadded(raw + _crc16_xmodem(raw).to_bytes(2, "little"))


try:
    from cdp_ray.xdr.fast._fastxdr import strkey as _encode_strkey  # the same text, about 10x faster
except ImportError:  # the C extension was not built
    _encode_strkey = _encode_strkey_py


def encode_strkey(prefix: str, payload: bytes) -> str:
    """Encode ``payload`` as a strkey with version ``prefix`` (``G``, ``M``, ``T``, ``X``, ``P``, ``C``, ``L``, ``B``).

    Like Go's ``strkey.Encode`` it does not check the payload length, so stellar-etl's ``tx_signers``
    (64-byte signatures encoded with the account version byte) can be reproduced.
    """
    return _encode_strkey(_STRKEY_VERSION[prefix], payload)


@functools.lru_cache(maxsize=1 << 15)
def strkey(prefix: str, payload: bytes) -> str:
    """:func:`encode_strkey`, cached: addresses repeat heavily. One-off payloads (signatures) should call
    :func:`encode_strkey` so they do not evict the addresses."""
    return encode_strkey(prefix, payload)


def signer_key_address(key: xdr.SignerKey) -> str:
    """Strkey of a ``SignerKey``: ``G`` (ed25519), ``T`` (pre-auth tx), ``X`` (sha256 hash), ``P`` (signed payload)."""
    t = key.type
    if t == xdr.SignerKeyType.SIGNER_KEY_TYPE_ED25519:
        return strkey("G", key.ed25519.uint256)
    if t == xdr.SignerKeyType.SIGNER_KEY_TYPE_PRE_AUTH_TX:
        return strkey("T", key.pre_auth_tx.uint256)
    if t == xdr.SignerKeyType.SIGNER_KEY_TYPE_HASH_X:
        return strkey("X", key.hash_x.uint256)
    return strkey("P", key.ed25519_signed_payload.to_xdr_bytes())


def pool_id_hex(pool_id) -> str:
    """Hex of a ``PoolID`` / ``Hash`` (stellar-etl ``liquidity_pool_id``)."""
    return getattr(pool_id, "pool_id", pool_id).hash.hex()


def pool_id_strkey(pool_id) -> str:
    """``L...`` strkey of a ``PoolID``."""
    return strkey("L", getattr(pool_id, "pool_id", pool_id).hash)


def contract_strkey(contract_id) -> str:
    """``C...`` strkey of a ``ContractID`` / ``Hash`` / raw 32 bytes."""
    raw = contract_id if isinstance(contract_id, bytes) else getattr(contract_id, "contract_id", contract_id).hash
    return strkey("C", raw)


def claimable_balance_id_hex(balance_id: xdr.ClaimableBalanceID) -> str:
    """Hex of the ``ClaimableBalanceID`` XDR (4-byte type then hash), as stellar-etl's ``balance_id``."""
    return balance_id.to_xdr_bytes().hex()


def claimable_balance_id_strkey(balance_id: xdr.ClaimableBalanceID) -> str:
    """``B...`` strkey of a ``ClaimableBalanceID`` (1-byte type then hash)."""
    return strkey("B", bytes([balance_id.type.value]) + balance_id.v0.hash)


_SC_ACCOUNT = xdr.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT


def sc_address(address: xdr.SCAddress) -> str:
    """Strkey of an ``SCAddress``: account ``G``, contract ``C``, muxed ``M``, claimable balance ``B``, pool ``L``."""
    t = address.type
    if t is _SC_ACCOUNT:  # the common case, read directly
        return strkey("G", address.account_id.account_id.ed25519.uint256)
    if t == xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT:
        return contract_strkey(address.contract_id)
    if t == xdr.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT:
        m = address.muxed_account
        return strkey("M", m.ed25519.uint256 + m.id.uint64.to_bytes(8, "big"))
    if t == xdr.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE:
        return claimable_balance_id_strkey(address.claimable_balance_id)
    return pool_id_strkey(address.liquidity_pool_id)


# --- assets -------------------------------------------------------------------------------------------

NATIVE_ASSET_ID = -5706705804583548011
_ASSET_TYPE = {0: "native", 1: "credit_alphanum4", 2: "credit_alphanum12", 3: "liquidity_pool_shares"}


def asset_parts(asset) -> tuple[str, str, str]:
    """``(asset_type, code, issuer)`` of an ``Asset`` / ``ChangeTrustAsset`` / ``TrustLineAsset`` (non-pool).

    Types are stellar-etl's strings (``native``, ``credit_alphanum4``, ``credit_alphanum12``); code and
    issuer are empty for the native asset; trailing NULs are stripped from codes.
    """
    t = asset.type
    if t is _NATIVE_TYPE:
        return "native", "", ""
    if t is _ALPHANUM4_TYPE:
        a = asset.alpha_num4
        code = a.asset_code.asset_code4.rstrip(_NUL).decode("utf-8", "replace")
        return "credit_alphanum4", code, account_id(a.issuer)
    if t is _ALPHANUM12_TYPE:
        a = asset.alpha_num12
        code = a.asset_code.asset_code12.rstrip(_NUL).decode("utf-8", "replace")
        return "credit_alphanum12", code, account_id(a.issuer)
    raise ValueError(f"asset type {_ASSET_TYPE.get(t.value, t.value)} has no code and issuer")


_NUL = b"\x00"
_NATIVE_TYPE, _ALPHANUM4_TYPE, _ALPHANUM12_TYPE = (
    xdr.AssetType.ASSET_TYPE_NATIVE,
    xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4,
    xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12,
)


def asset_id(code: str, issuer: str, asset_type: str) -> int:
    """stellar-etl's ``asset_id``: FarmHash ``Fingerprint64(code + issuer + type)`` as a signed int64."""
    return _fingerprint64(code + issuer + asset_type)


@functools.lru_cache(maxsize=65536)
def _fingerprint64(key: str) -> int:
    h = farmhash.fingerprint64(key.encode())
    return h - (1 << 64) if h >= 1 << 63 else h


def asset_canonical(asset) -> str:
    """Go's ``Asset.StringCanonical()``: ``native`` or ``CODE:ISSUER``."""
    t, code, issuer = asset_parts(asset)
    return "native" if t == "native" else f"{code}:{issuer}"


def asset_code_from_allow_trust(code: xdr.AssetCode, issuer: str) -> tuple[str, str, str]:
    """``(asset_type, code, issuer)`` of an ``AllowTrustOp`` asset code with its issuer."""
    if code.type.value == 1:
        return "credit_alphanum4", code.asset_code4.asset_code4.rstrip(b"\x00").decode("utf-8", "replace"), issuer
    return "credit_alphanum12", code.asset_code12.asset_code12.rstrip(b"\x00").decode("utf-8", "replace"), issuer


# --- amounts and prices -------------------------------------------------------------------------------

STROOPS_PER_UNIT = 10_000_000


def stroops_to_real(stroops: int) -> float:
    """Amount in units as the nearest float64 (stellar-etl ``ConvertStroopValueToReal``; exact rounding)."""
    return stroops / STROOPS_PER_UNIT


def _rat_string(num: int, den: int, places: int = 7) -> str:
    """Go's ``big.Rat.FloatString(places)``: rounded to nearest, halves away from zero."""
    neg = (num < 0) != (den < 0)
    num, den = abs(num), abs(den)
    scale = 10**places
    q, r = divmod(num * scale, den)
    if 2 * r >= den:
        q += 1
    ip, fp = divmod(q, scale)
    s = f"{ip}.{fp:0{places}d}" if places else str(ip)
    return "-" + s if neg and q else s


def amount_string(stroops: int) -> str:
    """Go ``amount.String``: stroops as a decimal string with 7 places (``"12.3400000"``)."""
    return _rat_string(stroops, STROOPS_PER_UNIT)


def price_string(n: int, d: int) -> str:
    """Go ``xdr.Price.String()``: ``n/d`` rounded to 7 places."""
    return _rat_string(n, d)


def price_float(n: int, d: int) -> float:
    """stellar-etl's ``price``: :func:`price_string` parsed back to float64."""
    return float(price_string(n, d))


def int128_parts(hi: int, lo: int) -> int:
    """Signed 128-bit integer from its ``hi`` (signed) and ``lo`` (unsigned) halves."""
    return (hi << 64) | lo


# --- ledger entries -----------------------------------------------------------------------------------


def ledger_key_xdr(data: xdr.LedgerEntryData) -> bytes:
    """XDR bytes of the ``LedgerKey`` that identifies a ledger entry (its ``LedgerEntryData``)."""
    t = data.type
    head = t.value.to_bytes(4, "big")
    T = xdr.LedgerEntryType
    if t == T.ACCOUNT:
        return head + data.account.account_id.to_xdr_bytes()
    if t == T.TRUSTLINE:
        return head + data.trust_line.account_id.to_xdr_bytes() + data.trust_line.asset.to_xdr_bytes()
    if t == T.OFFER:
        return head + data.offer.seller_id.to_xdr_bytes() + data.offer.offer_id.to_xdr_bytes()
    if t == T.DATA:
        return head + data.data.account_id.to_xdr_bytes() + data.data.data_name.to_xdr_bytes()
    if t == T.CLAIMABLE_BALANCE:
        return head + data.claimable_balance.balance_id.to_xdr_bytes()
    if t == T.LIQUIDITY_POOL:
        return head + data.liquidity_pool.liquidity_pool_id.to_xdr_bytes()
    if t == T.CONTRACT_DATA:
        cd = data.contract_data
        return head + cd.contract.to_xdr_bytes() + cd.key.to_xdr_bytes() + cd.durability.to_xdr_bytes()
    if t == T.CONTRACT_CODE:
        return head + data.contract_code.hash.to_xdr_bytes()
    if t == T.CONFIG_SETTING:
        return head + data.config_setting.config_setting_id.value.to_bytes(4, "big")
    return head + data.ttl.key_hash.to_xdr_bytes()


def sponsoring_id(entry: xdr.LedgerEntry) -> str | None:
    """``G...`` sponsor of a ledger entry, or None."""
    if entry.ext.v != 1:
        return None
    sponsor = entry.ext.v1.sponsoring_id.sponsorship_descriptor
    return account_id(sponsor) if sponsor is not None else None


def signer_summary(account: xdr.AccountEntry) -> dict[str, int]:
    """``{signer key strkey: weight}`` of an account, its master key included when its weight is positive
    (Go ``SignerSummary``)."""
    out = {}
    master = account.thresholds.thresholds[0]
    if master > 0:
        out[account_id(account.account_id)] = master
    for s in account.signers:
        out[signer_key_address(s.key)] = s.weight.uint32
    return out


def signer_sponsors(account: xdr.AccountEntry) -> dict[str, str]:
    """``{signer key strkey: sponsor G...}`` of an account's sponsored signers (Go ``SponsorPerSigner``)."""
    ext = account.ext
    if ext.v != 1 or ext.v1.ext.v != 2:
        return {}
    ids = ext.v1.ext.v2.signer_sponsoring_i_ds
    out = {}
    for signer, sid in zip(account.signers, ids):
        if sid.sponsorship_descriptor is not None:
            out[signer_key_address(signer.key)] = account_id(sid.sponsorship_descriptor)
    return out
