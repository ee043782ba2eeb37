"""Soroban value rendering: ``SCVal`` -> JSON as stellar-etl writes it, and contract / asset helpers.

stellar-etl decodes topics and data with ``go-stellar-xdr-json``, i.e. the serde JSON of the Rust
``stellar-xdr`` crate. :func:`scval_to_json` reproduces that shape in Python:

* externally tagged snake_case unions: ``{"symbol": "transfer"}``, ``{"u32": 7}``, unit arms as bare
  strings (``"void"``, ``"ledger_key_contract_instance"``);
* 64-bit integers, time points, durations and 128/256-bit integers as decimal strings
  (``{"i128": "-5"}``); 32-bit integers as JSON numbers;
* bytes and hashes as lowercase hex; strings and symbols with non-printable bytes escaped as
  ``\\0 \\t \\n \\r \\\\ \\xNN`` (the ``escape-bytes`` rules);
* addresses as strkeys (``G``, ``C``, ``M``, ``B``, ``L``);
* ``Option`` as ``null``; map entries as ``{"key": ..., "val": ...}``.

:func:`scval_json` serialises compactly (``serde_json::to_string`` layout).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from binascii import b2a_base64
from typing import Any

from stellar_sdk import StrKey, xdr
from stellar_sdk.exceptions import Ed25519PublicKeyInvalidError

from cdp_ray.errors import CdpRayError
from cdp_ray.networks import network_id
from cdp_ray.processors.common import contract_strkey, sc_address, strkey
from cdp_ray.xdr import fast

_T = xdr.SCValType

_ERROR_TYPE = {
    xdr.SCErrorType.SCE_CONTRACT: "contract",
    xdr.SCErrorType.SCE_WASM_VM: "wasm_vm",
    xdr.SCErrorType.SCE_CONTEXT: "context",
    xdr.SCErrorType.SCE_STORAGE: "storage",
    xdr.SCErrorType.SCE_OBJECT: "object",
    xdr.SCErrorType.SCE_CRYPTO: "crypto",
    xdr.SCErrorType.SCE_EVENTS: "events",
    xdr.SCErrorType.SCE_BUDGET: "budget",
    xdr.SCErrorType.SCE_VALUE: "value",
    xdr.SCErrorType.SCE_AUTH: "auth",
}

_ESCAPES = {0: "\\0", 9: "\\t", 10: "\\n", 13: "\\r", 92: "\\\\"}
_NEEDS_ESCAPE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")


def escape_bytes(raw: bytes) -> str:
    """Rust ``escape-bytes``: printable ASCII kept, ``\\0 \\t \\n \\r \\\\`` named, anything else ``\\xNN``."""
    if _NEEDS_ESCAPE.search(raw) is None:
        return raw.decode("ascii")
    out = []
    for b in raw:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def int128(parts) -> int:
    """Signed value of an ``Int128Parts``."""
    return (parts.hi.int64 << 64) | parts.lo.uint64


def uint128(parts) -> int:
    """Value of a ``UInt128Parts``."""
    return (parts.hi.uint64 << 64) | parts.lo.uint64


def _int256(p) -> int:
    return (p.hi_hi.int64 << 192) | (p.hi_lo.uint64 << 128) | (p.lo_hi.uint64 << 64) | p.lo_lo.uint64


def _uint256(p) -> int:
    return (p.hi_hi.uint64 << 192) | (p.hi_lo.uint64 << 128) | (p.lo_hi.uint64 << 64) | p.lo_lo.uint64


def _error(e: xdr.SCError) -> dict:
    name = _ERROR_TYPE[e.type]
    if e.type == xdr.SCErrorType.SCE_CONTRACT:
        return {name: e.contract_code.uint32}
    return {name: e.code.name.removeprefix("SCEC_").lower()}


def _executable(ex: xdr.ContractExecutable) -> Any:
    t = ex.type
    if t == xdr.ContractExecutableType.CONTRACT_EXECUTABLE_WASM:
        return {"wasm": ex.wasm_hash.hash.hex()}
    if t == xdr.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET:
        return "stellar_asset"
    ref = getattr(ex, "external_ref", None)
    if ref is not None:
        owner = sc_address(ref.executable_owner)
        return {"external_ref": {"executable_owner": owner, "tag": escape_bytes(ref.tag.sc_string)}}
    raise ValueError(f"unsupported contract executable type {t.name}")


def _map(m) -> list | None:
    if m is None:
        return None
    return [{"key": scval_to_json(e.key), "val": scval_to_json(e.val)} for e in m.sc_map]


_SCVAL_JSON: dict[xdr.SCValType, Any] = {
    _T.SCV_BOOL: lambda v: {"bool": v.b},
    _T.SCV_VOID: lambda v: "void",
    _T.SCV_ERROR: lambda v: {"error": _error(v.error)},
    _T.SCV_U32: lambda v: {"u32": v.u32.uint32},
    _T.SCV_I32: lambda v: {"i32": v.i32.int32},
    _T.SCV_U64: lambda v: {"u64": str(v.u64.uint64)},
    _T.SCV_I64: lambda v: {"i64": str(v.i64.int64)},
    _T.SCV_TIMEPOINT: lambda v: {"timepoint": str(v.timepoint.time_point.uint64)},
    _T.SCV_DURATION: lambda v: {"duration": str(v.duration.duration.uint64)},
    _T.SCV_U128: lambda v: {"u128": str(uint128(v.u128))},
    _T.SCV_I128: lambda v: {"i128": str(int128(v.i128))},
    _T.SCV_U256: lambda v: {"u256": str(_uint256(v.u256))},
    _T.SCV_I256: lambda v: {"i256": str(_int256(v.i256))},
    _T.SCV_BYTES: lambda v: {"bytes": v.bytes.sc_bytes.hex()},
    _T.SCV_STRING: lambda v: {"string": escape_bytes(v.str.sc_string)},
    _T.SCV_SYMBOL: lambda v: {"symbol": escape_bytes(v.sym.sc_symbol)},
    _T.SCV_VEC: lambda v: {"vec": None if v.vec is None else [scval_to_json(x) for x in v.vec.sc_vec]},
    _T.SCV_MAP: lambda v: {"map": _map(v.map)},
    _T.SCV_ADDRESS: lambda v: {"address": sc_address(v.address)},
    _T.SCV_CONTRACT_INSTANCE: lambda v: {
        "contract_instance": {"executable": _executable(v.instance.executable), "storage": _map(v.instance.storage)}
    },
    _T.SCV_LEDGER_KEY_CONTRACT_INSTANCE: lambda v: "ledger_key_contract_instance",
    _T.SCV_LEDGER_KEY_NONCE: lambda v: {"ledger_key_nonce": {"nonce": str(v.nonce_key.nonce.int64)}},
}
if hasattr(_T, "SCV_EXECUTABLE_TAG"):
    _SCVAL_JSON[_T.SCV_EXECUTABLE_TAG] = lambda v: {"executable_tag": escape_bytes(v.executable_tag.sc_string)}


def scval_to_json(v: xdr.SCVal) -> Any:
    """The JSON value (dicts, lists, str, int, bool, None) stellar-etl writes for an ``SCVal``."""
    render = _SCVAL_JSON.get(v.type)
    if render is None:
        raise ValueError(f"unsupported SCVal type {v.type.name}")
    return render(v)


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_json(value: Any) -> str:
    """Compact JSON text, ``serde_json::to_string`` layout (no spaces, non-ASCII kept)."""
    return _COMPACT.encode(value)


def _map_text(m) -> str:
    if m is None:
        return "null"
    return "[" + ",".join(['{"key":' + scval_json(e.key) + ',"val":' + scval_json(e.val) + "}" for e in m.sc_map]) + "]"


def _vec_text(vec) -> str:
    return "null" if vec is None else "[" + ",".join([scval_json(x) for x in vec.sc_vec]) + "]"


_quote = json.encoder.encode_basestring  # the string encoder of ``_COMPACT`` (ensure_ascii=False)

#: :func:`scval_json` written directly for the common types, skipping the intermediate dicts and the encoder.
_SCVAL_TEXT: dict[xdr.SCValType, Any] = {
    _T.SCV_BOOL: lambda v: '{"bool":true}' if v.b else '{"bool":false}',
    _T.SCV_VOID: lambda v: '"void"',
    _T.SCV_U32: lambda v: f'{{"u32":{v.u32.uint32}}}',
    _T.SCV_I32: lambda v: f'{{"i32":{v.i32.int32}}}',
    _T.SCV_U64: lambda v: f'{{"u64":"{v.u64.uint64}"}}',
    _T.SCV_I64: lambda v: f'{{"i64":"{v.i64.int64}"}}',
    _T.SCV_TIMEPOINT: lambda v: f'{{"timepoint":"{v.timepoint.time_point.uint64}"}}',
    _T.SCV_DURATION: lambda v: f'{{"duration":"{v.duration.duration.uint64}"}}',
    _T.SCV_U128: lambda v: f'{{"u128":"{uint128(v.u128)}"}}',
    _T.SCV_I128: lambda v: f'{{"i128":"{int128(v.i128)}"}}',
    _T.SCV_U256: lambda v: f'{{"u256":"{_uint256(v.u256)}"}}',
    _T.SCV_I256: lambda v: f'{{"i256":"{_int256(v.i256)}"}}',
    _T.SCV_BYTES: lambda v: '{"bytes":"' + v.bytes.sc_bytes.hex() + '"}',
    _T.SCV_STRING: lambda v: '{"string":' + _quote(escape_bytes(v.str.sc_string)) + "}",
    _T.SCV_SYMBOL: lambda v: '{"symbol":' + _quote(escape_bytes(v.sym.sc_symbol)) + "}",
    _T.SCV_VEC: lambda v: '{"vec":' + _vec_text(v.vec) + "}",
    _T.SCV_MAP: lambda v: '{"map":' + _map_text(v.map) + "}",
    _T.SCV_ADDRESS: lambda v: '{"address":"' + sc_address(v.address) + '"}',
    _T.SCV_LEDGER_KEY_CONTRACT_INSTANCE: lambda v: '"ledger_key_contract_instance"',
}


def scval_json(v: xdr.SCVal) -> str:
    """:func:`scval_to_json` as compact JSON text."""
    render = _SCVAL_TEXT.get(v.type)
    return to_json(scval_to_json(v)) if render is None else render(v)


_A = xdr.SCAddressType
#: ``SCAddressType`` -> (strkey prefix, the strkey payload from the XDR of an ``SCV_ADDRESS`` value of that type)
_ADDRESS_PAYLOAD = {
    _A.SC_ADDRESS_TYPE_ACCOUNT: ("G", lambda raw: raw[12:]),  # PublicKey type (ed25519), key
    _A.SC_ADDRESS_TYPE_CONTRACT: ("C", lambda raw: raw[8:]),
    _A.SC_ADDRESS_TYPE_MUXED_ACCOUNT: ("M", lambda raw: raw[16:] + raw[8:16]),  # id, key; the strkey: key, id
    _A.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE: ("B", lambda raw: raw[11:]),  # id type (v0, its last byte), hash
    _A.SC_ADDRESS_TYPE_LIQUIDITY_POOL: ("L", lambda raw: raw[8:]),
}
#: Integer ``SCValType`` -> (JSON name, signed, written as a string); the value is the rest of the XDR
_INTEGERS = {
    _T.SCV_U32: ("u32", False, False),
    _T.SCV_I32: ("i32", True, False),
    _T.SCV_U64: ("u64", False, True),
    _T.SCV_I64: ("i64", True, True),
    _T.SCV_TIMEPOINT: ("timepoint", False, True),
    _T.SCV_DURATION: ("duration", False, True),
    _T.SCV_U128: ("u128", False, True),
    _T.SCV_I128: ("i128", True, True),
    _T.SCV_U256: ("u256", False, True),
    _T.SCV_I256: ("i256", True, True),
}


def xdr_scval_json(raw: bytes) -> str | None:
    """:func:`scval_json` of the ``SCVal`` whose XDR is ``raw``, read straight from it (no object walk) for
    integers and addresses, most of the values events carry; None for the other types."""
    t = raw[3]  # SCValType values fit its last byte
    if t == _T.SCV_ADDRESS:
        prefix, payload = _ADDRESS_PAYLOAD[raw[7]]
        return '{"address":"' + strkey(prefix, payload(raw)) + '"}'
    spec = _INTEGERS.get(t)
    if spec is None:
        return None
    name, signed, quoted = spec
    value = int.from_bytes(raw[4:], "big", signed=signed)
    return f'{{"{name}":"{value}"}}' if quoted else f'{{"{name}":{value}}}'


class XdrMemo(dict):
    """A memo keyed by XDR bytes (``get`` to look up): keys longer than ``max_key`` are not kept, and a memo
    holding ``max_entries`` starts over."""

    def __init__(self, max_key: int, max_entries: int = 1 << 15):
        super().__init__()
        self.max_key, self.max_entries = max_key, max_entries

    def keep(self, key: bytes, value):
        """Remember ``value`` under ``key`` (if short enough) and return it."""
        if len(key) <= self.max_key:
            if len(self) >= self.max_entries:
                self.clear()
            self[key] = value
        return value


#: :func:`scval_texts`' memo; callers with many hits may look ``raw`` up here first, saving a call
SCVAL_TEXTS_BY_XDR: XdrMemo = XdrMemo(max_key=512)


_decode_scval = functools.partial(fast.decode, "SCVal") if fast.available() else xdr.SCVal.from_xdr_bytes


def scval_texts(v: xdr.SCVal | None, raw: bytes) -> tuple[str, str]:
    """``(base64 XDR, JSON)`` of ``v`` whose XDR is ``raw``, memoised by ``raw`` for small values (event
    topics, symbols, addresses and amounts repeat across a ledger). With ``v`` None the value is decoded
    from ``raw`` where its JSON needs it."""
    texts = SCVAL_TEXTS_BY_XDR.get(raw)
    if texts is None:
        text = xdr_scval_json(raw) or scval_json(v if v is not None else _decode_scval(raw))
        texts = SCVAL_TEXTS_BY_XDR.keep(raw, (b2a_base64(raw, newline=False).decode(), text))
    return texts


scval_texts.cache_clear = SCVAL_TEXTS_BY_XDR.clear  # type: ignore[attr-defined]  (like functools' caches)


# --- typed accessors (``None`` when the value has another type) ------------------------------------


def scval_symbol(v: xdr.SCVal) -> str | None:
    return v.sym.sc_symbol.decode("utf-8", "replace") if v.type == _T.SCV_SYMBOL else None


def scval_string(v: xdr.SCVal) -> str | None:
    return v.str.sc_string.decode("utf-8", "replace") if v.type == _T.SCV_STRING else None


def scval_address(v: xdr.SCVal) -> str | None:
    return sc_address(v.address) if v.type == _T.SCV_ADDRESS else None


def scval_i128(v: xdr.SCVal) -> int | None:
    return int128(v.i128) if v.type == _T.SCV_I128 else None


# --- events ------------------------------------------------------------------------------------


def event_summary(event: xdr.ContractEvent) -> tuple:
    """What token movement readers (SEP-41 transfers, CAP-67 fees, SAC balance changes) look at in an event:
    ``(contract id (32 bytes) or None, type value, number of topics, first topic if a symbol, topics 1 and 2
    if addresses (strkeys), last topic if a string, the data's SCValType value, the data if an i128)``.

    Read in C from the XDR the fast engine kept (the event then stays undecoded), else from the values.
    """
    raw = fast.kept_xdr(event)
    if raw is not None:
        return fast.event_summary(raw)
    cid, topics, data = event.contract_id, event.body.v0.topics, event.body.v0.data
    n = len(topics)
    return (
        None if cid is None else cid.contract_id.hash,
        event.type.value,
        n,
        scval_symbol(topics[0]) if n else None,
        scval_address(topics[1]) if n > 1 else None,
        scval_address(topics[2]) if n > 2 else None,
        scval_string(topics[-1]) if n else None,
        data.type.value,
        scval_i128(data),
    )


# --- contract ids and assets -------------------------------------------------------------------


def contract_id_strkey(contract_id) -> str | None:
    """``C...`` of an optional ``ContractID`` (``None`` stays ``None``)."""
    return None if contract_id is None else contract_strkey(contract_id)


def account_id_xdr(address: str) -> xdr.AccountID:
    """``AccountID`` of a ``G...`` strkey."""
    key = xdr.Uint256(StrKey.decode_ed25519_public_key(address))
    return xdr.AccountID(xdr.PublicKey(xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, key))


_ASSET_CODE = re.compile(r"^[A-Za-z0-9]{1,12}$")


def _sep11_asset_xdr(s: str) -> bytes | None:
    """XDR of the ``Asset`` :func:`parse_sep11_asset` reads from ``s``, else ``None`` (the issuer decoded once)."""
    if s.lower() == "native":
        return _NATIVE_ASSET_XDR
    parts = s.split(":")
    if len(parts) != 2 or not _ASSET_CODE.match(parts[0]):
        return None
    code, issuer = parts
    try:
        key = StrKey.decode_ed25519_public_key(issuer)
    except Ed25519PublicKeyInvalidError:
        return None
    if len(code) <= 4:
        return _ALPHANUM4 + code.encode().ljust(4, b"\x00") + _ED25519 + key
    return _ALPHANUM12 + code.encode().ljust(12, b"\x00") + _ED25519 + key


_NATIVE_ASSET_XDR = xdr.AssetType.ASSET_TYPE_NATIVE.value.to_bytes(4, "big")
_ALPHANUM4 = xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4.value.to_bytes(4, "big")
_ALPHANUM12 = xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12.value.to_bytes(4, "big")
_ED25519 = xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519.value.to_bytes(4, "big")
#: ``HashIDPreimage`` head of a contract id (``ENVELOPE_TYPE_CONTRACT_ID``) and the from-asset arm's tag
_CONTRACT_ID = xdr.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID.value.to_bytes(4, "big")
_FROM_ASSET = xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ASSET.value.to_bytes(4, "big")


def parse_sep11_asset(s: str) -> xdr.Asset | None:
    """``native`` or ``CODE:G...`` (the SAC ``name()`` / last event topic) -> ``Asset``, else ``None``.

    Follows Go's ``xdr.BuildAssets`` for one asset: ``native`` case-insensitively, codes of 1-12
    alphanumerics (up to 4 -> alphanum4), issuers as valid account strkeys.
    """
    raw = _sep11_asset_xdr(s)
    return None if raw is None else xdr.Asset.from_xdr_bytes(raw)


@functools.lru_cache(maxsize=4096)
def _sac_id(asset_xdr: bytes, passphrase: str) -> bytes:
    """sha256 of the ``HashIDPreimage`` of the contract id of the asset with XDR ``asset_xdr``."""
    return hashlib.sha256(_CONTRACT_ID + network_id(passphrase) + _FROM_ASSET + asset_xdr).digest()


def sac_contract_id(asset: xdr.Asset, passphrase: str) -> bytes:
    """Raw 32-byte id of the Stellar Asset Contract of ``asset`` on the network ``passphrase``."""
    return _sac_id(asset.to_xdr_bytes(), passphrase)


@functools.lru_cache(maxsize=4096)
def sac_asset(name: str, contract_id: bytes, passphrase: str) -> xdr.Asset | None:
    """The asset a SEP-11 ``name`` denotes when ``contract_id`` (raw 32 bytes) is its Stellar Asset Contract
    on ``passphrase``, else ``None``. Cached: treat the returned ``Asset`` as read-only."""
    raw = _sep11_asset_xdr(name)
    return xdr.Asset.from_xdr_bytes(raw) if raw is not None and _sac_id(raw, passphrase) == contract_id else None


_SAC_FUNCTIONS = ("transfer", "mint", "clawback", "burn")


def sac_event(event: xdr.ContractEvent, network_passphrase: str | None) -> tuple | None:
    """Go's ``contractevents.NewStellarAssetContractEvent``: ``(kind, asset, from, to, amount)`` of a Stellar
    Asset Contract transfer, mint, clawback or burn event (``from``/``to`` None where the kind has none), else
    None. Contract events cannot be recognised without the network passphrase: they raise instead."""
    contract, event_type, ntopics, fn, first, second, name, _, amount = event_summary(event)
    if event_type != xdr.ContractEventType.CONTRACT or contract is None:
        return None
    if not network_passphrase:
        raise CdpRayError(
            "cannot recognise Stellar Asset Contract events without the network passphrase",
            hint="decode ledgers with cdp_ray.xdr.decode_ledger(data, network_passphrase)",
        )
    if ntopics <= 2 or fn not in _SAC_FUNCTIONS or name is None:
        return None
    asset = sac_asset(name, contract, network_passphrase)
    if asset is None or amount is None:
        return None
    if fn == "burn":
        return (fn, asset, first, None, amount) if ntopics == 3 and first is not None else None
    if ntopics != 4 or first is None or second is None:
        return None
    frm, to = {"transfer": (first, second), "mint": (None, second), "clawback": (second, None)}[fn]
    return fn, asset, frm, to, amount


def native_sac_strkey(passphrase: str) -> str:
    """``C...`` of the native (XLM) asset contract on ``passphrase``."""
    return contract_strkey(sac_contract_id(xdr.Asset(xdr.AssetType.ASSET_TYPE_NATIVE), passphrase))


def created_contract_id(preimage: xdr.ContractIDPreimage, passphrase: str) -> bytes:
    """Raw id of the contract a ``CreateContract`` host function deploys (address+salt or asset preimage)."""
    full = xdr.HashIDPreimage(
        xdr.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID,
        contract_id=xdr.HashIDPreimageContractID(xdr.Hash(network_id(passphrase)), preimage),
    )
    return hashlib.sha256(full.to_xdr_bytes()).digest()


__all__ = [
    "SCVAL_TEXTS_BY_XDR",
    "XdrMemo",
    "account_id_xdr",
    "contract_id_strkey",
    "created_contract_id",
    "escape_bytes",
    "event_summary",
    "int128",
    "native_sac_strkey",
    "parse_sep11_asset",
    "sac_asset",
    "sac_contract_id",
    "sac_event",
    "scval_address",
    "scval_i128",
    "scval_json",
    "scval_string",
    "scval_symbol",
    "scval_texts",
    "scval_to_json",
    "to_json",
    "uint128",
    "xdr_scval_json",
]
