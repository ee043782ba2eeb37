"""Every ledger file shape in shared/stellar-data splits into whole LedgerCloseMeta values with the right sequences."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import zstandard

from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.lake.formats import decompress, detect, peek_header, split_ledgers
from cdp_ray.lake.writer import batch_bytes, write_lake
from cdp_ray.xdr.ledger import decode_lcm
from conftest import PUBNET

# (file, shape detect() must report)
SHAPES = [
    ("stellar-go/FCD285FF--53312000.xdr.zstd", "batch"),  # galexie zstd LedgerCloseMetaBatch
    ("stellar-go-testbucket/FFFFFC19--998.xdr.zstd", "batch"),
    ("rs-stellar-xdr/FC62697B--60659332.xdr", "batch"),  # raw, uncompressed batch
    ("wallet-backend/ledger-51000294.xdr.gz", "lcm"),  # gzip LedgerCloseMeta
    ("wallet-backend/ledger-63092982.xdr.gz", "lcm"),
    ("stellar-go-ttp/ledgers-base64.txt", "base64"),  # one base64 LCM per line
    ("stellar-go-ttp/revoke-trustline-ledger-56065483", "base64"),
    ("stellar-go-lighthorizon/ledgers/1410048", "serialized"),  # SerializedLedgerCloseMeta v0
    ("synthetic/stellar-go-loadtest/load-test-ledgers-v22.xdr.zstd", "stream"),  # zstd xdr.Stream
    ("synthetic/stellar-go-loadtest/load-test-ledgers-v24.xdr.zstd", "stream"),
    ("stellar-etl-golden/reconstructed/FE29B950--30820015.reconstructed.xdr", "lcm"),  # raw LCM v0
]


@pytest.fixture(scope="module")
def inventory(stellar_data: Path) -> dict[str, list[tuple[int, int]]]:
    """file -> [(sequence, lcm version)] in file order, from inventory.jsonl."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for line in (stellar_data / "inventory.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["file"]].append((row["seq"], row["lcm_v"]))
    return out


@pytest.mark.parametrize("name, shape", SHAPES, ids=[n.split("/")[-1] for n, _ in SHAPES])
def test_every_shape_splits_into_whole_ledgers(stellar_data: Path, inventory, name: str, shape: str) -> None:
    data = (stellar_data / name).read_bytes()
    assert detect(decompress(data, name)) == shape
    ledgers = split_ledgers(data, name)
    peeks = [peek_header(raw, name) for raw in ledgers]
    assert [(p.sequence, p.lcm_version) for p in peeks] == inventory[name]
    assert all(p.header_hash_ok for p in peeks)
    for raw, p in zip(ledgers, peeks):
        lcm = decode_lcm(raw, name)  # the whole value, no trailing bytes
        body = {0: lcm.v0, 1: lcm.v1, 2: lcm.v2}[lcm.v]
        assert body.ledger_header.header.ledger_seq.uint32 == p.sequence
        assert body.ledger_header.hash.hash == p.hash


def test_forced_shape_matches_detection(stellar_data: Path) -> None:
    name = "stellar-go-lighthorizon/ledgers/1410050"
    data = (stellar_data / name).read_bytes()
    assert split_ledgers(data, name, "serialized") == split_ledgers(data, name)
    assert peek_header(split_ledgers(data, name)[0]).sequence == 1410050


def test_lighthorizon_directory_reads_as_a_verified_chain(stellar_data: Path) -> None:
    """320 contiguous testnet ledgers, one SerializedLedgerCloseMeta file each: header hashes and chain verify."""
    lake = LedgerLake(str(stellar_data / "stellar-go-lighthorizon" / "ledgers"), layout="files")
    assert lake.available_range() == (1410048, 1410367)
    got = list(lake.read_range(1410048, 1410367))
    assert [r.sequence for r in got] == list(range(1410048, 1410368))
    assert got[5].key.endswith("ledgers/1410053")


def test_base64_lines_file_gives_each_ledger_by_sequence(stellar_data: Path) -> None:
    lake = LedgerLake(str(stellar_data / "stellar-go-ttp" / "ledgers-base64.txt"))
    lake.resolve(26154623)
    assert lake.layout == "files"
    assert [r.sequence for r in lake.read_range(26154623, 26154623)] == [26154623]


@pytest.mark.parametrize("per_file, per_partition", [(4, 2), (3, 1), (10, 64000)])
def test_multi_ledger_batches_written_by_write_lake_split_back(
    tmp_path: Path, wallet_ledgers: dict[int, bytes], per_file: int, per_partition: int
) -> None:
    schema = LakeSchema(ledgers_per_file=per_file, files_per_partition=per_partition)
    keys = write_lake(wallet_ledgers.values(), str(tmp_path), schema, network_passphrase=PUBNET)
    assert keys == list(dict.fromkeys(schema.key_for(s) for s in wallet_ledgers))
    seen: list[int] = []
    for key in keys:
        data = (tmp_path / key).read_bytes()
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        first, last, count = (int.from_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data)[i : i + 4], "big") for i in (0, 4, 8))
        parts = split_ledgers(data, key)
        assert len(parts) == count == last - first + 1
        for raw in parts:
            seq = peek_header(raw).sequence
            assert raw == wallet_ledgers[seq]  # the exact original bytes, not a re-encoding
            seen.append(seq)
    assert seen == sorted(wallet_ledgers)
    lake = LedgerLake(str(tmp_path))
    assert [(r.sequence, r.xdr) for r in lake.read_range(63092983, 63092990)] == [
        (s, wallet_ledgers[s]) for s in range(63092983, 63092991)
    ]


def test_uncompressed_multi_ledger_batch_splits(wallet_ledgers: dict[int, bytes]) -> None:
    raws = [wallet_ledgers[s] for s in (63092984, 63092985, 63092986)]
    assert split_ledgers(batch_bytes(63092984, 63092986, raws), "b") == raws
