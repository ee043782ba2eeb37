"""Parity with stellar-etl's goldens: ``ledgers``, ``transactions`` and ``operations``, every row, every field.

Inputs are the rebuilt ``LedgerCloseMeta`` files in ``stellar-etl-golden/reconstructed/`` (see the data
README); the goldens are stellar-etl's own ``export_*`` outputs for the same ledgers.
"""

from __future__ import annotations

import json

import pytest
from datetime import datetime

import pyarrow as pa
from stellar_sdk import Keypair, StrKey, xdr

from cdp_ray.lake.formats import split_ledgers
from cdp_ray.processors import get_processor
from cdp_ray.processors.common import (
    amount_string,
    asset_id,
    go_enum_string,
    go_name,
    price_float,
    price_string,
    signer_key_address,
    stroops_to_real,
    strkey,
)
from cdp_ray.xdr import decode_ledger

PUBNET = "Public Global Stellar Network ; September 2015"

# Golden columns we deliberately do not produce, with the reason.
ALLOWED_MISSING = {
    # stellar-etl writes the same map twice (``details`` and ``details_json``); we store it once.
    "operations": {"details_json"},
}


def _ledger(stellar_data, name: str):
    path = stellar_data / "stellar-etl-golden" / "reconstructed" / name
    (lcm,) = split_ledgers(path.read_bytes(), str(path))
    return decode_ledger(lcm, PUBNET)


def _golden(stellar_data, rel: str) -> list[dict]:
    text = (stellar_data / "stellar-etl-golden" / rel).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _normalise(value, column: str):
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if column == "details" and isinstance(value, str):
        return json.loads(value)
    return value


def _compare(table: pa.Table, golden: list[dict], processor: str) -> None:
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == len(golden)
    golden_cols = set().union(*(g.keys() for g in golden))
    missing = golden_cols - set(table.schema.names) - ALLOWED_MISSING.get(processor, set())
    assert not missing, f"columns in the golden but not in {processor}: {sorted(missing)}"
    diffs = []
    for g in golden:
        mine = rows[g["id"]]
        for column in table.schema.names:
            # Go's omitempty fields are absent from the golden where empty; ours are null.
            want = g.get(column)
            got = _normalise(mine[column], column)
            if got != want:
                diffs.append(f"id={g['id']} {column}: {got!r} != {want!r}")
    assert not diffs, f"{len(diffs)} differences, first ones:\n" + "\n".join(diffs[:20])


def test_ledgers_match_single_ledger_golden(stellar_data):
    ledger = _ledger(stellar_data, "FE29B180--30822015.reconstructed.xdr")
    table = get_processor("ledgers").process([ledger])
    golden = _golden(stellar_data, "ledgers/single_ledger.golden")
    assert [g["sequence"] for g in golden] == [30822015]
    _compare(table, golden, "ledgers")


def test_transactions_match_one_ledger_golden(stellar_data):
    ledger = _ledger(stellar_data, "FE29B950--30820015.reconstructed.xdr")
    table = get_processor("transactions").process([ledger])
    golden = _golden(stellar_data, "transactions/one_ledger_txs.golden")
    assert len(golden) == 59
    _compare(table, golden, "transactions")
    # Spot values that would catch a wrong id, fee or signer encoding outright.
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == (30820015 << 32) | (1 << 12)
    assert sum(table.column("successful").to_pylist()) == 44
    assert all(len(s) == 108 for s in first["tx_signers"])  # 64-byte signatures as G-strkeys


def test_transactions_without_xdr_columns(stellar_data):
    ledger = _ledger(stellar_data, "FE29B950--30820015.reconstructed.xdr")
    proc = get_processor("transactions")
    full = proc.process([ledger])
    lean = proc.process([ledger], {"include_xdr": False})
    xdr_cols = ["tx_envelope", "tx_result", "tx_meta", "tx_fee_meta"]
    for c in xdr_cols:
        assert lean.column(c).null_count == lean.num_rows == 59
    assert lean.drop(xdr_cols).equals(full.drop(xdr_cols))


def test_operations_match_one_ledger_golden(stellar_data):
    ledger = _ledger(stellar_data, "FE29B950--30820015.reconstructed.xdr")
    table = get_processor("operations").process([ledger])
    golden = _golden(stellar_data, "operations/one_ledger_ops.golden")
    assert len(golden) == 143
    for g in golden:
        assert g["details_json"] == g["details"]  # the allow-listed duplicate carries nothing more
    _compare(table, golden, "operations")
    types = table.column("type_string").to_pylist()
    assert types.count("manage_buy_offer") == 72 and types.count("path_payment_strict_receive") == 12


def _raw_details(line: str) -> str:
    """The ``details`` object of a golden line exactly as Go's encoder wrote it."""
    start = line.index('"details":') + len('"details":')
    _, end = json.JSONDecoder().raw_decode(line, start)
    return line[start:end]


@pytest.mark.parametrize(
    "processor, ledger_file, golden_file",
    [
        ("operations", "FE29B950--30820015.reconstructed.xdr", "operations/one_ledger_ops.golden"),
        ("effects", "FE29B950--30820015.reconstructed.xdr", "effects/one_ledger_effects.golden"),
    ],
)
def test_details_text_is_byte_identical_to_go(stellar_data, processor, ledger_file, golden_file):
    """Not only the same values: the same JSON text (key order, ``1e-7``, ``0`` for 0.0, escapes)."""
    table = get_processor(processor).process([_ledger(stellar_data, ledger_file)])
    ours = dict(zip(table.column("id").to_pylist(), table.column("details").to_pylist()))
    lines = [x for x in (stellar_data / "stellar-etl-golden" / golden_file).read_text().splitlines() if x.strip()]
    golden = {json.loads(x)["id"]: _raw_details(x) for x in lines}
    assert ours.keys() == golden.keys()
    diffs = [(i, ours[i], g) for i, g in golden.items() if ours[i] != g]
    assert not diffs, f"{len(diffs)} of {len(golden)} differ, first: {diffs[:2]}"
    assert any('"price":1e-7' in g for g in golden.values()) or processor == "effects"


def test_go_json_spelling():
    from cdp_ray.processors.common import go_float, go_json

    cases = {1e-07: "1e-7", 10.0: "10", 5.11e-05: "0.0000511", 1e16: "10000000000000000", 1e21: "1e+21",
             1.5e-10: "1.5e-10", 0.0: "0", 123.4567: "123.4567", 1e-06: "0.000001", 9.99e-07: "9.99e-7"}
    assert {f: go_float(f) for f in cases} == cases
    assert go_float(-0.0) == "-0"
    text = go_json({"b": [1.0, {"z": 2.5e-7}], "a": "1.5e-07 <&>\u2028", "big": 2**70})
    assert text == '{"a":"1.5e-07 \\u003c\\u0026\\u003e\\u2028","b":[1,{"z":2.5e-7}],"big":1180591620717411303424}'
    assert json.loads(text)["a"] == "1.5e-07 <&>\u2028"


def test_ledger_without_transactions(stellar_data):
    """``ledger_no_txs.golden`` (ledger 10363513, not in the data) is empty; an empty real ledger gives
    an empty table with the declared schema."""
    assert _golden(stellar_data, "transactions/ledger_no_txs.golden") == []
    path = stellar_data / "stellar-go-ttp" / "ledgers-base64.txt"
    ledgers = [decode_ledger(lcm, PUBNET) for lcm in split_ledgers(path.read_bytes(), str(path))]
    empty = [lg for lg in ledgers if lg.sequence == 6154623]
    assert empty and not empty[0].transactions
    for name in ("transactions", "operations"):
        proc = get_processor(name)
        table = proc.process(empty)
        assert table.num_rows == 0 and table.schema == proc.schema


# --- shared helpers in cdp_ray.processors.common --------------------------------------------------------


def test_amounts_and_prices_follow_go():
    assert amount_string(0) == "0.0000000"
    assert amount_string(-1) == "-0.0000001"
    assert amount_string(9223372036854775807) == "922337203685.4775807"
    assert stroops_to_real(1510 * 10_000_000) == 1510.0
    assert stroops_to_real(1) == 1e-07
    # big.Rat.FloatString rounds half away from zero
    assert price_string(1, 3) == "0.3333333"
    assert price_string(2, 3) == "0.6666667"
    assert price_string(1, 20_000_000) == "0.0000001"
    assert price_string(-1, 20_000_000) == "-0.0000001"
    assert price_string(1, 30_000_000) == "0.0000000"
    assert price_float(101848, 1993111547) == 5.11e-05


def test_asset_id_is_farmhash_fingerprint():
    # values from stellar-etl's operations golden
    usd = ("USD", "GDUKMGUGDZQK6YHYA5Z6AY2G4XDSZPSZ3SW5UN3ARVMO6QSRDWP5YLEX", "credit_alphanum4")
    assert asset_id(*usd) == -3581730783529410773
    assert asset_id("", "", "native") == -5706705804583548011


def test_go_names_and_strkeys():
    assert go_enum_string(xdr.OperationResultCode.opINNER) == "OperationResultCodeOpInner"
    fee_bump_ok = xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS
    assert go_enum_string(fee_bump_ok) == "TransactionResultCodeTxFeeBumpInnerSuccess"
    assert go_enum_string(xdr.MemoType.MEMO_TEXT) == "MemoTypeMemoText"
    assert go_name("ExtendFootprintTTLResultCode") == "ExtendFootprintTtlResultCode"
    kp = Keypair.from_raw_ed25519_seed(bytes(range(32)))
    raw = kp.raw_public_key()
    assert strkey("G", raw) == StrKey.encode_ed25519_public_key(raw)
    assert strkey("C", raw) == StrKey.encode_contract(raw)
    key = xdr.SignerKey(type=xdr.SignerKeyType.SIGNER_KEY_TYPE_HASH_X, hash_x=xdr.Uint256(raw))
    assert signer_key_address(key) == StrKey.encode_sha256_hash(raw)


def test_scval_string_follows_go():
    """``parameters_decoded`` values: Go's ``xdr.ScVal.String()``."""
    from cdp_ray.processors.operation_details import scval_string

    T = xdr.SCValType
    u32 = xdr.SCVal(type=T.SCV_U32, u32=xdr.Uint32(5))
    sym = xdr.SCVal(type=T.SCV_SYMBOL, sym=xdr.SCSymbol(b"amount"))
    i128 = xdr.SCVal(type=T.SCV_I128, i128=xdr.Int128Parts(hi=xdr.Int64(-1), lo=xdr.Uint64(2**64 - 10)))
    assert scval_string(i128) == "-10"
    assert scval_string(xdr.SCVal(type=T.SCV_VEC, vec=xdr.SCVec([u32, sym]))) == "[5 amount]"
    entry = xdr.SCMapEntry(key=sym, val=i128)
    assert scval_string(xdr.SCVal(type=T.SCV_MAP, map=xdr.SCMap([entry]))) == "[{amount -10}]"
    assert scval_string(xdr.SCVal(type=T.SCV_VOID)) == "(void)"
    assert scval_string(xdr.SCVal(type=T.SCV_BYTES, bytes=xdr.SCBytes(b"\x01\xab"))) == "01ab"
    tp = xdr.SCVal(type=T.SCV_TIMEPOINT, timepoint=xdr.TimePoint(xdr.Uint64(1700000000)))
    assert scval_string(tp) == "2023-11-14 22:13:20 +0000 UTC"
    err = xdr.SCVal(type=T.SCV_ERROR, error=xdr.SCError(type=xdr.SCErrorType.SCE_CONTRACT, contract_code=xdr.Uint32(7)))
    assert scval_string(err) == "ScErrorTypeSceContract(7)"
    nonce = xdr.SCVal(type=T.SCV_LEDGER_KEY_NONCE, nonce_key=xdr.SCNonceKey(xdr.Int64(31)))
    assert scval_string(nonce) == "{1F}"
