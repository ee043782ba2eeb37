"""``contract_invocations``: one row per ``InvokeHostFunction`` operation.

A row names the host function (``invoke_contract``, ``create_contract``, ``create_contract_v2``,
``upload_contract_wasm``), the contract it calls or deploys (deployed ids are derived from the preimage
and the network), the function name and arguments (JSON as stellar-etl renders ``SCVal``, and base64
XDR), the authorization entries, the declared resources, the fees charged, the return value and how
many contract events the call emitted. JSON shapes follow the Rust ``stellar-xdr`` serde encoding.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from stellar_sdk import xdr

from cdp_ray.processors.base import col, processor
from cdp_ray.processors.common import asset_parts, b64, contract_strkey, sc_address
from cdp_ray.processors.contract_events import transaction_events
from cdp_ray.processors.payments import OPERATION_KEY_COLUMNS, operation_key, operation_source
from cdp_ray.processors.scval import created_contract_id, escape_bytes, scval_to_json, to_json
from cdp_ray.xdr import Ledger, Transaction

CONTRACT_INVOCATIONS_SCHEMA = pa.schema(
    [
        *OPERATION_KEY_COLUMNS,
        col("successful", pa.bool_(), "whether the transaction succeeded"),
        col("result_code", pa.string(), "invoke host function result: success, trapped, resource_limit_exceeded, ..."),
        col("source_account", pa.string(), "G... operation source (transaction source when unset)"),
        col("source_account_muxed", pa.string(), "M... operation source when muxed"),
        col(
            "host_function_type",
            pa.string(),
            "invoke_contract, create_contract, create_contract_v2 or upload_contract_wasm",
        ),
        col("contract_id", pa.string(), "C... of the called or deployed contract; null for wasm uploads"),
        col("function_name", pa.string(), "called function (invoke_contract only)"),
        col("args", pa.string(), "JSON array of the arguments (constructor arguments for create_contract_v2)"),
        col("args_xdr", pa.list_(pa.string()), "base64 SCVal XDR of each argument"),
        col("wasm_hash", pa.string(), "hex hash of the uploaded or deployed Wasm"),
        col("asset", pa.string(), "for a Stellar Asset Contract deployment: native or CODE:ISSUER"),
        col("auth", pa.string(), "JSON array of the SorobanAuthorizationEntry values"),
        col("auth_addresses", pa.list_(pa.string()), "addresses of address-credential auth entries"),
        col("return_value", pa.string(), "JSON of the returned SCVal (successful calls)"),
        col("contract_events_count", pa.int32(), "contract events the operation emitted"),
        col("instructions", pa.uint32(), "declared CPU instructions"),
        col("disk_read_bytes", pa.uint32(), "declared disk read bytes"),
        col("write_bytes", pa.uint32(), "declared write bytes"),
        col("read_only_keys", pa.int32(), "ledger keys in the read-only footprint"),
        col("read_write_keys", pa.int32(), "ledger keys in the read-write footprint"),
        col("resource_fee", pa.int64(), "declared resource fee, stroops"),
        col("non_refundable_resource_fee_charged", pa.int64(), "stroops, from the Soroban meta"),
        col("refundable_resource_fee_charged", pa.int64(), "stroops, from the Soroban meta"),
        col("rent_fee_charged", pa.int64(), "stroops, from the Soroban meta"),
    ]
)


class ContractInvocationsConfig(BaseModel):
    """Options of the ``contract_invocations`` processor."""

    model_config = ConfigDict(extra="forbid")

    include_failed: bool = Field(True, description="also emit operations of failed transactions")


_HOST_FN = {
    xdr.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT: "invoke_contract",
    xdr.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT: "create_contract",
    xdr.HostFunctionType.HOST_FUNCTION_TYPE_UPLOAD_CONTRACT_WASM: "upload_contract_wasm",
    xdr.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT_V2: "create_contract_v2",
}


def _asset_json(asset: xdr.Asset):
    t, code, issuer = asset_parts(asset)
    if t == "native":
        return "native"
    return {t: {"asset_code": code, "issuer": issuer}}


def _preimage_json(p: xdr.ContractIDPreimage):
    if p.type == xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS:
        return {"address": {"address": sc_address(p.from_address.address), "salt": p.from_address.salt.uint256.hex()}}
    return {"asset": _asset_json(p.from_asset)}


def _executable_json(ex: xdr.ContractExecutable):
    if ex.type == xdr.ContractExecutableType.CONTRACT_EXECUTABLE_WASM:
        return {"wasm": ex.wasm_hash.hash.hex()}
    return "stellar_asset"


def _invoke_json(a: xdr.InvokeContractArgs) -> dict:
    return {
        "contract_address": sc_address(a.contract_address),
        "function_name": escape_bytes(a.function_name.sc_symbol),
        "args": [scval_to_json(x) for x in a.args],
    }


def _create_json(a, v2: bool) -> dict:
    out = {"contract_id_preimage": _preimage_json(a.contract_id_preimage), "executable": _executable_json(a.executable)}
    if v2:
        out["constructor_args"] = [scval_to_json(x) for x in a.constructor_args]
    return out


def _invocation_json(inv: xdr.SorobanAuthorizedInvocation) -> dict:
    f = inv.function
    t = f.type
    if t == xdr.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN:
        fn = {"contract_fn": _invoke_json(f.contract_fn)}
    elif t == xdr.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CREATE_CONTRACT_HOST_FN:
        fn = {"create_contract_host_fn": _create_json(f.create_contract_host_fn, False)}
    else:
        fn = {"create_contract_v2_host_fn": _create_json(f.create_contract_v2_host_fn, True)}
    return {"function": fn, "sub_invocations": [_invocation_json(s) for s in inv.sub_invocations]}


def _address_credentials(c: xdr.SorobanAddressCredentials) -> dict:
    return {
        "address": sc_address(c.address),
        "nonce": str(c.nonce.int64),
        "signature_expiration_ledger": c.signature_expiration_ledger.uint32,
        "signature": scval_to_json(c.signature),
    }


def _credentials_json(c: xdr.SorobanCredentials) -> tuple[object, str | None]:
    """``(json, address)`` of auth credentials; the address is ``None`` for source-account credentials."""
    if c.type == xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT:
        return "source_account", None
    name = c.type.name.removeprefix("SOROBAN_CREDENTIALS_").lower()
    body = c.address or getattr(c, "address_v2", None)
    if body is not None:
        return {name: _address_credentials(body)}, sc_address(body.address)
    return {name: b64(c)}, None


def _auth(entries) -> tuple[str, list[str]]:
    out, addresses = [], []
    for e in entries:
        cred, addr = _credentials_json(e.credentials)
        if addr is not None:
            addresses.append(addr)
        out.append({"credentials": cred, "root_invocation": _invocation_json(e.root_invocation)})
    return to_json(out), addresses


def _soroban_meta(tx: Transaction):
    m = tx.meta
    if m.v == 3:
        return m.v3.soroban_meta
    if m.v == 4:
        return m.v4.soroban_meta
    return None


def invocation_row(ledger: Ledger, tx: Transaction, op_index: int, op: xdr.Operation, passphrase: str | None) -> dict:
    """The row of the ``op_index``-th (1-based) operation, an ``InvokeHostFunction``."""
    ihf = op.body.invoke_host_function_op
    fn = ihf.host_function
    source, source_muxed = operation_source(tx, op)
    contract_id = function_name = wasm_hash = asset = None
    args: list = []
    if fn.type == xdr.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT:
        ic = fn.invoke_contract
        contract_id = sc_address(ic.contract_address)
        function_name = ic.function_name.sc_symbol.decode("utf-8", "replace")
        args = list(ic.args)
    elif fn.type == xdr.HostFunctionType.HOST_FUNCTION_TYPE_UPLOAD_CONTRACT_WASM:
        wasm_hash = hashlib.sha256(fn.wasm).hexdigest()
    else:
        v2 = fn.type == xdr.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT_V2
        cc = fn.create_contract_v2 if v2 else fn.create_contract
        if passphrase:
            contract_id = contract_strkey(created_contract_id(cc.contract_id_preimage, passphrase))
        if cc.executable.type == xdr.ContractExecutableType.CONTRACT_EXECUTABLE_WASM:
            wasm_hash = cc.executable.wasm_hash.hash.hex()
        pre = cc.contract_id_preimage
        if pre.type == xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ASSET:
            t, code, issuer = asset_parts(pre.from_asset)
            asset = "native" if t == "native" else f"{code}:{issuer}"
        if v2:
            args = list(cc.constructor_args)
    auth_json, auth_addresses = _auth(ihf.auth)
    results = tx.operation_results
    result_code = None
    if op_index <= len(results) and results[op_index - 1].tr is not None:
        res = results[op_index - 1].tr.invoke_host_function_result
        if res is not None:
            result_code = res.code.name.removeprefix("INVOKE_HOST_FUNCTION_").lower()
    sdata = tx.tx.ext.soroban_data if getattr(tx.tx, "ext", None) is not None and tx.tx.ext.v == 1 else None
    res_decl = sdata.resources if sdata is not None else None
    sm = _soroban_meta(tx)
    fees = sm.ext.v1 if sm is not None and sm.ext.v == 1 else None
    ret = getattr(sm, "return_value", None) if sm is not None else None
    _, op_events, _ = transaction_events(tx)
    return {
        **operation_key(ledger, tx, op_index),
        "successful": tx.successful,
        "result_code": result_code,
        "source_account": source,
        "source_account_muxed": source_muxed,
        "host_function_type": _HOST_FN[fn.type],
        "contract_id": contract_id,
        "function_name": function_name,
        "args": to_json([scval_to_json(a) for a in args]),
        "args_xdr": [b64(a) for a in args],
        "wasm_hash": wasm_hash,
        "asset": asset,
        "auth": auth_json,
        "auth_addresses": auth_addresses,
        "return_value": None if ret is None or not tx.successful else to_json(scval_to_json(ret)),
        "contract_events_count": len(op_events[op_index - 1]) if op_index <= len(op_events) else 0,
        "instructions": None if res_decl is None else res_decl.instructions.uint32,
        "disk_read_bytes": None if res_decl is None else res_decl.disk_read_bytes.uint32,
        "write_bytes": None if res_decl is None else res_decl.write_bytes.uint32,
        "read_only_keys": None if res_decl is None else len(res_decl.footprint.read_only),
        "read_write_keys": None if res_decl is None else len(res_decl.footprint.read_write),
        "resource_fee": None if sdata is None else sdata.resource_fee.int64,
        "non_refundable_resource_fee_charged": (
            None if fees is None else fees.total_non_refundable_resource_fee_charged.int64
        ),
        "refundable_resource_fee_charged": None if fees is None else fees.total_refundable_resource_fee_charged.int64,
        "rent_fee_charged": None if fees is None else fees.rent_fee_charged.int64,
    }


@processor(
    "contract_invocations",
    schema=CONTRACT_INVOCATIONS_SCHEMA,
    primary_key=("operation_id",),
    description="One row per InvokeHostFunction operation: contract, function, arguments (JSON), auth, "
    "resources, fees, return value and event count.",
    config=ContractInvocationsConfig,
    tags=("soroban",),
)
def contract_invocations(batch: list[Ledger], config: ContractInvocationsConfig) -> list[dict]:
    rows: list[dict] = []
    for ledger in batch:
        passphrase = getattr(ledger, "network_passphrase", None)
        for tx in ledger.transactions:
            if not (config.include_failed or tx.successful):
                continue
            for i, op in enumerate(tx.operations, start=1):
                if op.body.type == xdr.OperationType.INVOKE_HOST_FUNCTION:
                    rows.append(invocation_row(ledger, tx, i, op, passphrase))
    return rows
