"""Helpers shared by processors: ids, strkeys, XDR enum names."""

from __future__ import annotations

import base64
import re

import pyarrow as pa
from stellar_sdk import StrKey, xdr

TIMESTAMP = pa.timestamp("us", tz="UTC")


def toid(ledger: int, tx_index: int = 0, op_index: int = 0) -> int:
    """stellar-etl / Horizon total order id: ``ledger << 32 | tx_index << 12 | op_index``."""
    return (ledger << 32) | (tx_index << 12) | op_index


def b64(value) -> str:
    """Base64 of an XDR value."""
    return base64.b64encode(value.to_xdr_bytes()).decode()


def account_id(pk: xdr.PublicKey | xdr.AccountID) -> str:
    """``G...`` strkey of an ``AccountID`` / ``PublicKey`` / ``NodeID``."""
    key = getattr(pk, "account_id", pk)
    key = getattr(key, "node_id", key)
    return StrKey.encode_ed25519_public_key(key.ed25519.uint256)


def muxed_account(m: xdr.MuxedAccount) -> tuple[str, str | None]:
    """``(G... base account, M... muxed address or None)`` of a ``MuxedAccount``."""
    if m.type == xdr.CryptoKeyType.KEY_TYPE_ED25519:
        return StrKey.encode_ed25519_public_key(m.ed25519.uint256), None
    med = m.med25519
    base = StrKey.encode_ed25519_public_key(med.ed25519.uint256)
    return base, StrKey.encode_med25519_public_key(med.ed25519.uint256 + med.id.uint64.to_bytes(8, "big"))


def _go_case(name: str) -> str:
    return "".join(p[:1].upper() + p[1:].lower() for p in name.split("_"))


def go_enum_name(value, prefix: str) -> str:
    """Go's ``String()`` of an XDR enum, e.g. ``LedgerEntryType.CONTRACT_DATA`` -> ``LedgerEntryTypeContractData``."""
    return prefix + _go_case(value.name)


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
