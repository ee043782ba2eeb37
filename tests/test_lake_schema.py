"""SEP-54 keys, .config.json, suffix detection, and the no-listing promise of the `lake` layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec.implementations.local as fs_local
import pytest

from cdp_ray.errors import NetworkMismatchError
from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.source import LakeSource
from conftest import PUBNET, TESTNET

PUBNET_LAKE = LakeSchema(ledgers_per_file=1, files_per_partition=64000)


@pytest.mark.parametrize(
    "schema, seq, key",
    [
        # SEP-54's example: the public pubnet lake (1 ledger per file, 64000 files per partition).
        (PUBNET_LAKE, 50000000, "FD054DFF--49984000-50047999/FD050F7F--50000000.xdr.zst"),
        (PUBNET_LAKE, 63092982, "FC3E15FF--63040000-63103999/FC3D4709--63092982.xdr.zst"),
        (PUBNET_LAKE, 0, "FFFFFFFF--0-63999/FFFFFFFF--0.xdr.zst"),
        (PUBNET_LAKE, 63999, "FFFFFFFF--0-63999/FFFF0600--63999.xdr.zst"),
        (PUBNET_LAKE, 64000, "FFFF05FF--64000-127999/FFFF05FF--64000.xdr.zst"),
        # Multi-ledger batches name the batch's last ledger; no partition directory when files_per_partition=1.
        (LakeSchema(ledgers_per_file=2, files_per_partition=1), 2, "FFFFFFFD--2-3.xdr.zst"),
        (LakeSchema(ledgers_per_file=2, files_per_partition=1), 3, "FFFFFFFD--2-3.xdr.zst"),
        (LakeSchema(ledgers_per_file=64, files_per_partition=10), 100, "FFFFFFFF--0-639/FFFFFFBF--64-127.xdr.zst"),
        (LakeSchema(ledgers_per_file=64, files_per_partition=10), 700, "FFFFFD7F--640-1279/FFFFFD7F--640-703.xdr.zst"),
        (LakeSchema(ledgers_per_file=1, files_per_partition=1), 999, "FFFFFC18--999.xdr.zst"),
        (LakeSchema(ledgers_per_file=1, files_per_partition=1, file_extension="zstd"), 53312000, "FCD285FF--53312000.xdr.zstd"),
    ],
)
def test_keys_match_sep54(schema: LakeSchema, seq: int, key: str) -> None:
    assert schema.key_for(seq) == key


def test_files_for_range_covers_whole_batches() -> None:
    schema = LakeSchema(ledgers_per_file=4, files_per_partition=2)
    got = list(schema.files_for_range(5, 13))
    assert [(s, e) for s, e, _ in got] == [(4, 7), (8, 11), (12, 15)]
    assert [k for _, _, k in got] == [
        "FFFFFFFF--0-7/FFFFFFFB--4-7.xdr.zst",
        "FFFFFFF7--8-15/FFFFFFF7--8-11.xdr.zst",
        "FFFFFFF7--8-15/FFFFFFF3--12-15.xdr.zst",
    ]


def test_config_json_is_read(tmp_path: Path, wallet_ledgers: dict[int, bytes]) -> None:
    write_lake(wallet_ledgers.values(), str(tmp_path), LakeSchema(ledgers_per_file=4, files_per_partition=2), network_passphrase=PUBNET)
    doc = json.loads((tmp_path / ".config.json").read_text())
    assert doc == {
        "networkPassphrase": PUBNET, "version": "1.0", "compression": "zstd", "ledgersPerBatch": 4, "batchesPerPartition": 2,
    }
    # The source's own schema (1/64000) is overridden by the lake's .config.json.
    lake = LakeSource(uri=str(tmp_path), start=63092983, end=63092990, ledgers_per_file=1, files_per_partition=64000).open()
    assert lake.layout == "lake" and lake.config_found
    assert (lake.schema.ledgers_per_file, lake.schema.files_per_partition, lake.schema.network_passphrase) == (4, 2, PUBNET)
    assert lake.keys_for_range(63092983, 63092990) == [
        "FC3D470F--63092976-63092983/FC3D470B--63092980-63092983.xdr.zst",
        "FC3D4707--63092984-63092991/FC3D4707--63092984-63092987.xdr.zst",
        "FC3D4707--63092984-63092991/FC3D4703--63092988-63092991.xdr.zst",
    ]
    assert [r.sequence for r in lake.read_range(63092983, 63092990)] == list(range(63092983, 63092991))


def test_config_json_network_mismatch_is_raised_before_decoding(tmp_path: Path, wallet_ledgers: dict[int, bytes]) -> None:
    write_lake(list(wallet_ledgers.values())[:2], str(tmp_path), PUBNET_LAKE, network_passphrase=PUBNET)
    with pytest.raises(NetworkMismatchError) as err:
        LakeSource(uri=str(tmp_path), start=63092982, end=63092983, network="testnet").open()
    msg = str(err.value)
    assert PUBNET in msg and TESTNET in msg and ".config.json" in msg and "network" in err.value.hint
    assert err.value.detected == PUBNET
    assert LakeSource(uri=str(tmp_path), start=63092982, end=63092983, network="pubnet").open().layout == "lake"


def test_legacy_zstd_suffix_detected_from_existing_object(stellar_data: Path) -> None:
    # stellar-go's testbucket: a lake of 1 ledger per file, no partitions, the older `.xdr.zstd` suffix.
    src = LakeSource(
        uri=str(stellar_data / "stellar-go-testbucket"), start=997, end=999, network="testnet",
        layout="lake", ledgers_per_file=1, files_per_partition=1,
    )
    lake = src.open()
    assert (lake.layout, lake.schema.file_extension) == ("lake", "zstd")
    assert lake.keys_for_range(997, 999) == ["FFFFFC1A--997.xdr.zstd", "FFFFFC19--998.xdr.zstd", "FFFFFC18--999.xdr.zstd"]
    assert [r.sequence for r in lake.read_range(997, 999)] == [997, 998, 999]


def test_auto_layout_picks_lake_from_an_object_without_config(stellar_data: Path) -> None:
    src = LakeSource(uri=str(stellar_data / "stellar-go"), start=53312000, end=53312000, ledgers_per_file=1, files_per_partition=1)
    lake = src.open()
    assert (lake.layout, lake.config_found, lake.schema.key_for(53312000)) == ("lake", False, "FCD285FF--53312000.xdr.zstd")
    assert [r.sequence for r in lake.read_range(53312000, 53312000)] == [53312000]


class _Counted:
    """Counts calls of the listing methods of fsspec's local filesystem."""

    METHODS = ("ls", "find", "glob", "walk", "du", "exists", "isdir", "isfile", "info")

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[tuple[str, str]] = []
        for name in self.METHODS:
            orig = getattr(fs_local.LocalFileSystem, name)
            monkeypatch.setattr(fs_local.LocalFileSystem, name, self._wrap(name, orig))

    def _wrap(self, name, orig):
        def wrapper(fs, path, *a, **kw):
            self.calls.append((name, str(path)))
            return orig(fs, path, *a, **kw)

        return wrapper


def test_lake_layout_never_lists(tmp_path: Path, wallet_ledgers: dict[int, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    write_lake(wallet_ledgers.values(), str(tmp_path), LakeSchema(ledgers_per_file=2, files_per_partition=2), network_passphrase=PUBNET)
    counted = _Counted(monkeypatch)
    lake = LakeSource(uri=str(tmp_path), start=63092982, end=63092991).open()
    got = [r.sequence for r in lake.read_range(63092982, 63092991)]
    assert got == list(range(63092982, 63092992))
    assert [c for c in counted.calls if c[0] in ("ls", "find", "glob", "walk", "du")] == []


def test_files_layout_lists_once(tmp_path: Path, stellar_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for seq in (63092982, 63092983, 63092984):
        shutil.copy(stellar_data / "wallet-backend" / f"ledger-{seq}.xdr.gz", tmp_path)
    (tmp_path / "README.md").write_text("not a ledger")
    counted = _Counted(monkeypatch)
    lake = LedgerLake(str(tmp_path))
    lake.resolve(63092982)
    assert lake.layout == "files" and lake.available_range() == (63092982, 63092984)
    assert [r.sequence for r in lake.read_range(63092982, 63092984)] == [63092982, 63092983, 63092984]
    assert [c[0] for c in counted.calls].count("find") == 1
