"""Every real ledger in ``shared/stellar-data`` goes through ``transactions`` and ``operations``.

Counts are checked against ``inventory.jsonl`` (worked out independently of this code): ``txs`` and
``successful_txs`` per ledger, ``ops`` (every operation of the transaction set, failed transactions
included, which is what the ``operations`` table holds), ``invoke_host_fn_ops`` and the per-type
counts in ``top_ops``. The 320 contiguous lighthorizon ledgers are sampled.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cdp_ray.errors import NetworkMismatchError
from cdp_ray.lake.formats import split_ledgers
from cdp_ray.processors import get_processor
from cdp_ray.xdr import decode_ledger

PASSPHRASES = {
    "pubnet": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
}
# Network of each directory per the data README (inventory has null where a ledger has no transactions).
DIR_NETWORK = {
    "rs-stellar-xdr": "pubnet",
    "stellar-etl-golden": "pubnet",
    "stellar-go": "pubnet",
    "stellar-go-lighthorizon": "testnet",
    "stellar-go-testbucket": "testnet",
    "stellar-go-ttp": "pubnet",
    "wallet-backend": "pubnet",
}
LIGHTHORIZON_SAMPLE = ("1410048", "1410111", "1410200", "1410303", "1410367")

_NO_DATA = "<no stellar-data>"


def _inventory_path() -> Path | None:
    """Parametrisation happens before fixtures exist: use the lookup behind the ``stellar_data`` fixture."""
    try:
        from conftest import STELLAR_DATA
    except ImportError:
        return None
    return None if STELLAR_DATA is None else STELLAR_DATA / "inventory.jsonl"


def _files() -> list[str]:
    path = _inventory_path()
    if path is None or not path.exists():
        return [_NO_DATA]
    files = sorted({json.loads(line)["file"] for line in path.read_text().splitlines() if line.strip()})
    out = []
    for f in files:
        top = f.split("/")[0]
        if top not in DIR_NETWORK:  # synthetic/ is not real network data
            continue
        if top == "stellar-go-lighthorizon" and f.rsplit("/", 1)[-1] not in LIGHTHORIZON_SAMPLE:
            continue
        out.append(f)
    return out


@pytest.fixture(scope="module")
def inventory(stellar_data) -> dict[int, dict]:
    rows = [json.loads(line) for line in (stellar_data / "inventory.jsonl").read_text().splitlines() if line.strip()]
    return {r["seq"]: r for r in rows if not r["file"].startswith("synthetic/")}


@pytest.mark.parametrize("rel", _files())
def test_file_yields_inventory_counts(stellar_data, inventory, rel):
    if rel == _NO_DATA:
        pytest.skip("inventory.jsonl not found at collection time")
    path = stellar_data / rel
    network = DIR_NETWORK[rel.split("/")[0]]
    lcms = split_ledgers(path.read_bytes(), rel)
    assert lcms
    tx_proc, op_proc = get_processor("transactions"), get_processor("operations")
    for lcm in lcms:
        ledger = decode_ledger(lcm, PASSPHRASES[network], key=rel)
        inv = inventory[ledger.sequence]
        assert inv["file"] == rel
        assert inv["network"] in (network, None)

        txs = tx_proc.process([ledger])
        ops = op_proc.process([ledger])
        assert txs.schema == tx_proc.schema and ops.schema == op_proc.schema
        assert txs.num_rows == inv["txs"]
        assert sum(txs.column("successful").to_pylist()) == inv["successful_txs"]
        assert ops.num_rows == inv["ops"]
        assert sum(txs.column("operation_count").to_pylist()) == inv["ops"]

        tx_ids = txs.column("id").to_pylist()
        assert tx_ids == sorted(set(tx_ids))
        assert set(txs.column("transaction_hash").to_pylist()) == {t.hash.hex() for t in ledger.transactions}
        assert set(txs.column("ledger_sequence").to_pylist()) <= {ledger.sequence}

        op_rows = ops.to_pylist()
        op_ids = [r["id"] for r in op_rows]
        assert len(set(op_ids)) == len(op_ids)
        assert {r["transaction_id"] for r in op_rows} <= set(tx_ids)
        for r in op_rows:
            assert r["id"] >> 32 == ledger.sequence and r["id"] & 0xFFF >= 1
            assert r["id"] - (r["id"] & 0xFFF) == r["transaction_id"]
            assert isinstance(json.loads(r["details"]), dict)
        by_type = Counter(r["type_string"].upper() for r in op_rows)
        for name, count in inv["top_ops"].items():
            assert by_type[name] == count, name
        assert by_type["INVOKE_HOST_FUNCTION"] == inv["invoke_host_fn_ops"]


def test_wrong_network_is_refused(stellar_data):
    rel = "stellar-go-testbucket/FFFFFC18--999.xdr.zstd"
    (lcm,) = split_ledgers((stellar_data / rel).read_bytes(), rel)
    with pytest.raises(NetworkMismatchError):
        decode_ledger(lcm, PASSPHRASES["pubnet"], key=rel)
