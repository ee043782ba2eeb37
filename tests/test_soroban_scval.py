"""SCVal -> JSON rendering (stellar-etl / go-stellar-xdr-json shape) and contract-event row layout.

Expected strings follow the Rust ``stellar-xdr`` serde rules stellar-etl's JSON comes from; the event
vector is stellar-etl's own unit test (internal/transform/contract_events_test.go).
"""

from __future__ import annotations

import json

import pytest
from stellar_sdk import Asset, StrKey, scval, xdr

from cdp_ray.processors.contract_events import event_row, transaction_events
from cdp_ray.processors.scval import (
    escape_bytes,
    native_sac_strkey,
    parse_sep11_asset,
    sac_contract_id,
    scval_json,
    scval_to_json,
    xdr_scval_json,
)
from cdp_ray.xdr import decode_ledger
from test_fast_decode import _groups, real_ledgers

G = "GAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTODB4A"
C = "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (scval.to_bool(True), '{"bool":true}'),
        (scval.to_void(), '"void"'),
        (scval.to_uint32(7), '{"u32":7}'),
        (scval.to_int32(-7), '{"i32":-7}'),
        (scval.to_uint64(2**64 - 1), '{"u64":"18446744073709551615"}'),
        (scval.to_int64(-(2**63)), '{"i64":"-9223372036854775808"}'),
        (scval.to_timepoint(1700000000), '{"timepoint":"1700000000"}'),
        (scval.to_duration(60), '{"duration":"60"}'),
        (scval.to_int128(-(2**127)), '{"i128":"-170141183460469231731687303715884105728"}'),
        (scval.to_uint128(2**128 - 1), '{"u128":"340282366920938463463374607431768211455"}'),
        (scval.to_int256(-1), '{"i256":"-1"}'),
        (scval.to_uint256(2**200 + 5), '{"u256":"' + str(2**200 + 5) + '"}'),
        (scval.to_bytes(b"\x00\xab\xff"), '{"bytes":"00abff"}'),
        (scval.to_string("USDC:" + G), '{"string":"USDC:' + G + '"}'),
        (scval.to_symbol("transfer"), '{"symbol":"transfer"}'),
        (scval.to_address(G), '{"address":"' + G + '"}'),
        (scval.to_address(C), '{"address":"' + C + '"}'),
        (xdr.SCVal(xdr.SCValType.SCV_VEC, vec=None), '{"vec":null}'),
        (scval.to_vec([scval.to_uint32(1), scval.to_void()]), '{"vec":[{"u32":1},"void"]}'),
        (
            scval.to_map({scval.to_symbol("amount"): scval.to_int128(5), scval.to_symbol("to_muxed_id"): scval.to_uint64(9)}),
            '{"map":[{"key":{"symbol":"amount"},"val":{"i128":"5"}},{"key":{"symbol":"to_muxed_id"},"val":{"u64":"9"}}]}',
        ),
        (xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE), '"ledger_key_contract_instance"'),
        (
            xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_NONCE, nonce_key=xdr.SCNonceKey(xdr.Int64(-3))),
            '{"ledger_key_nonce":{"nonce":"-3"}}',
        ),
        (
            xdr.SCVal(xdr.SCValType.SCV_ERROR, error=xdr.SCError(xdr.SCErrorType.SCE_CONTRACT, contract_code=xdr.Uint32(12))),
            '{"error":{"contract":12}}',
        ),
        (
            xdr.SCVal(
                xdr.SCValType.SCV_ERROR,
                error=xdr.SCError(xdr.SCErrorType.SCE_WASM_VM, code=xdr.SCErrorCode.SCEC_INVALID_ACTION),
            ),
            '{"error":{"wasm_vm":"invalid_action"}}',
        ),
        (
            xdr.SCVal(
                xdr.SCValType.SCV_CONTRACT_INSTANCE,
                instance=xdr.SCContractInstance(
                    xdr.ContractExecutable(xdr.ContractExecutableType.CONTRACT_EXECUTABLE_STELLAR_ASSET), None
                ),
            ),
            '{"contract_instance":{"executable":"stellar_asset","storage":null}}',
        ),
        (
            xdr.SCVal(
                xdr.SCValType.SCV_CONTRACT_INSTANCE,
                instance=xdr.SCContractInstance(
                    xdr.ContractExecutable(
                        xdr.ContractExecutableType.CONTRACT_EXECUTABLE_WASM, wasm_hash=xdr.Hash(bytes(range(32)))
                    ),
                    xdr.SCMap([]),
                ),
            ),
            '{"contract_instance":{"executable":{"wasm":"' + bytes(range(32)).hex() + '"},"storage":[]}}',
        ),
    ],
)
def test_scval_json(value, expected):
    assert scval_json(value) == expected
    assert scval_to_json(xdr.SCVal.from_xdr(value.to_xdr())) == json.loads(expected)
    from_xdr = xdr_scval_json(value.to_xdr_bytes())
    assert from_xdr == (expected if value.type in _READ_FROM_XDR else None)


_READ_FROM_XDR = {
    *(getattr(xdr.SCValType, f"SCV_{n}") for n in ("U32", "I32", "U64", "I64", "U128", "I128", "U256", "I256")),
    xdr.SCValType.SCV_TIMEPOINT,
    xdr.SCValType.SCV_DURATION,
    xdr.SCValType.SCV_ADDRESS,
}


@pytest.mark.parametrize(
    "value",
    [
        scval.to_uint32(2**32 - 1),
        scval.to_int32(-(2**31)),
        scval.to_uint64(0),
        scval.to_int64(2**63 - 1),
        scval.to_int128(2**127 - 1),
        scval.to_int128(-1),
        scval.to_uint256(2**256 - 1),
        scval.to_int256(-(2**255)),
        scval.to_int256(2**255 - 1),
    ],
)
def test_integers_read_from_xdr_at_their_bounds(value):
    assert xdr_scval_json(value.to_xdr_bytes()) == scval_json(value)


def test_xdr_scval_json_matches_the_objects_on_real_events(stellar_data):
    """Every topic and data value of every event of the real ledgers (both engines encode the same XDR)."""
    seen = set()
    for group in _groups():
        for _, passphrase, raw in real_ledgers(stellar_data, group):
            for tx in decode_ledger(raw, passphrase).transactions:
                tx_events, op_events, diagnostic = transaction_events(tx)
                events = [e.event for e in tx_events] + [e for es in op_events for e in es]
                for event in events + [d.event for d in diagnostic]:
                    for v in (*event.body.v0.topics, event.body.v0.data):
                        text = xdr_scval_json(v.to_xdr_bytes())
                        if text is not None:
                            assert text == scval_json(v)
                            seen.add(v.type if v.type != xdr.SCValType.SCV_ADDRESS else v.address.type)
    assert {xdr.SCValType.SCV_I128, xdr.SCValType.SCV_U64, xdr.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT} <= seen
    assert {xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT, xdr.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE} <= seen


def test_muxed_claimable_balance_and_pool_addresses():
    key = StrKey.decode_ed25519_public_key(G)
    muxed = xdr.SCAddress(
        xdr.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT,
        muxed_account=xdr.MuxedEd25519Account(xdr.Uint64(1020515624), xdr.Uint256(key)),
    )
    assert scval_to_json(xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=muxed)) == {
        "address": "MAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTOCAAAAAADZU6VFBOJ2"
    }
    pool = xdr.SCAddress(xdr.SCAddressType.SC_ADDRESS_TYPE_LIQUIDITY_POOL, liquidity_pool_id=xdr.PoolID(xdr.Hash(bytes(32))))
    assert scval_to_json(xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=pool))["address"].startswith("L")
    cb = xdr.SCAddress(
        xdr.SCAddressType.SC_ADDRESS_TYPE_CLAIMABLE_BALANCE,
        claimable_balance_id=xdr.ClaimableBalanceID(
            xdr.ClaimableBalanceIDType.CLAIMABLE_BALANCE_ID_TYPE_V0, v0=xdr.Hash(bytes(32))
        ),
    )
    assert scval_to_json(xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=cb))["address"].startswith("B")
    for address in (muxed, pool, cb):
        value = xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=address)
        assert xdr_scval_json(value.to_xdr_bytes()) == scval_json(value)
    assert xdr_scval_json(xdr.SCVal(xdr.SCValType.SCV_ADDRESS, address=muxed).to_xdr_bytes()) == (
        '{"address":"MAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTOCAAAAAADZU6VFBOJ2"}'
    )


def test_escape_bytes_rules():
    assert escape_bytes(b"plain ascii ~") == "plain ascii ~"
    assert escape_bytes(b"a\\b\x00\t\n\r\x7f\xc3\x01") == "a\\\\b\\0\\t\\n\\r\\x7f\\xc3\\x01"
    # JSON then escapes the backslashes and quotes once more, as serde_json does
    assert scval_json(xdr.SCVal(xdr.SCValType.SCV_SYMBOL, sym=xdr.SCSymbol(b'q"\n'))) == '{"symbol":"q\\"\\\\n"}'


def test_sac_ids_and_sep11_assets():
    pub = "Public Global Stellar Network ; September 2015"
    assert native_sac_strkey(pub) == C == Asset.native().contract_id(pub)
    usdc = "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
    a = parse_sep11_asset(usdc)
    assert a.type == xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4
    assert StrKey.encode_contract(sac_contract_id(a, pub)) == Asset(*usdc.split(":")).contract_id(pub)
    assert parse_sep11_asset("f0db7575d4ca:GDKSK5Y3QOUX4EA5IPR5SEIEUAFNA2Z7O3BPTPA6RCCGO77WN5KOGX6E").type == (
        xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12
    )
    assert parse_sep11_asset("NATIVE").type == xdr.AssetType.ASSET_TYPE_NATIVE
    for bad in ("", "USDC", "US-DC:" + G, "USDC:" + C, "TOOLONGCODE13:" + G, "a:b:c"):
        assert parse_sep11_asset(bad) is None, bad


def test_contract_event_row_matches_stellar_etl_unit_test():
    """The vector of stellar-etl's TestTransformContractEvent: a diagnostic event with a zero contract id."""
    true = xdr.SCVal(xdr.SCValType.SCV_BOOL, b=True)
    event = xdr.ContractEvent(
        xdr.ExtensionPoint(0),
        xdr.ContractID(xdr.Hash(bytes(32))),
        xdr.ContractEventType.DIAGNOSTIC,
        xdr.ContractEventBody(0, v0=xdr.ContractEventV0([true], true)),
    )

    class _Ledger:
        sequence = 30521816
        closed_at = None

    class _Tx:
        index = 1
        hash = bytes.fromhex("a87fef5eeb260269c380f2de456aad72b59bb315aaac777860456e09dac0bafb")
        successful = False

    row = event_row(_Ledger(), _Tx(), event, True, source="operation", index=0, op_index=1)
    assert row["transaction_id"] == 131090201534533632 and row["operation_id"] == 131090201534533633
    assert row["contract_id"] == "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSC4"
    assert (row["type"], row["type_string"]) == (2, "ContractEventTypeDiagnostic")
    assert row["topics"] == ["AAAAAAAAAAE="] and row["data"] == "AAAAAAAAAAE="
    assert row["topics_decoded"] == '[{"bool":true}]' and row["data_decoded"] == '{"bool":true}'
    assert row["contract_event_xdr"] == "AAAAAQAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAEAAAAAAAAAAQAAAAAAAAAB"
    assert row["in_successful_contract_call"] is True and row["successful"] is False
