"""Bad input: each case is a typed error that names the object and ledger and says what to do."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

import cdp_ray
from cdp_ray.errors import (
    CorruptLedgerFileError,
    LakeError,
    LedgerIntegrityError,
    LedgerNotFoundError,
    NetworkMismatchError,
)
from cdp_ray.lake import LakeSchema, LedgerLake
from cdp_ray.lake.formats import peek_header
from cdp_ray.lake.writer import batch_bytes, write_lake
from cdp_ray.pipeline.dataset import decode_raw
from cdp_ray.pipeline.source import LakeSource
from conftest import PUBNET, TESTNET

FIRST, LAST = 63092982, 63092987
ONE = LakeSchema(ledgers_per_file=1, files_per_partition=64000)


def _lake(root: Path, ledgers: dict[int, bytes], schema: LakeSchema = ONE) -> Path:
    write_lake([ledgers[s] for s in range(FIRST, LAST + 1)], str(root), schema, network_passphrase=PUBNET)
    return root


def _put(root: Path, schema: LakeSchema, seq: int, raws: list[bytes], first: int | None = None) -> Path:
    path = root / schema.key_for(seq)
    first = schema.file_start(seq) if first is None else first
    path.write_bytes(zstandard.ZstdCompressor().compress(batch_bytes(first, first + len(raws) - 1, raws)))
    return path


def _read(root: Path, start: int = FIRST, end: int = LAST) -> list[int]:
    return [r.sequence for r in LedgerLake(str(root)).read_range(start, end)]


def test_truncated_zstd_file(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    path = root / ONE.key_for(63092984)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(root)
    assert err.value.key == str(path)
    assert "truncated zstd" in str(err.value) and "re-export" in err.value.hint


def test_garbage_file(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    path = root / ONE.key_for(63092985)
    path.write_bytes(os.urandom(5000))
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(root)
    assert err.value.key == str(path) and str(path) in str(err.value)


def test_truncated_ledger_inside_a_valid_zstd_frame(tmp_path: Path, wallet_ledgers) -> None:
    """The header (and its hash) is intact, the body is cut: reading passes, decoding names file and ledger."""
    root = _lake(tmp_path, wallet_ledgers)
    whole = wallet_ledgers[63092986]
    path = _put(root, ONE, 63092986, [whole[: len(whole) // 2]])
    raws = list(LedgerLake(str(root)).read_range(63092986, 63092986))
    assert raws[0].key == str(path) and peek_header(raws[0].xdr).header_hash_ok
    with pytest.raises(CorruptLedgerFileError) as err:
        decode_raw(raws[0].xdr, PUBNET, key=raws[0].key, sequence=raws[0].sequence)
    assert (err.value.key, err.value.sequence) == (str(path), 63092986)
    assert "ledger 63092986" in str(err.value) and "undecodable LedgerCloseMeta" in str(err.value)
    with pytest.raises(CorruptLedgerFileError) as err:
        cdp_ray.load("ledgers", str(root), 63092985, 63092987)
    assert err.value.key == str(path)


def test_missing_object_names_the_exact_key(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    path = root / ONE.key_for(63092985)
    path.unlink()
    with pytest.raises(LedgerNotFoundError) as err:
        _read(root)
    assert (err.value.sequence, err.value.key) == (63092985, str(path))
    assert f"ledger 63092985 is missing: expected object '{path}' does not exist" in str(err.value)
    assert _read(root, FIRST, 63092984) == [FIRST, 63092983, 63092984]  # the ledgers before it still read


def test_range_past_the_lake_end(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    with pytest.raises(LedgerNotFoundError) as err:
        _read(root, LAST, LAST + 1)
    assert err.value.key == str(root / ONE.key_for(LAST + 1)) and "exported that far" in err.value.hint


def test_batch_lacking_a_ledger_its_key_covers(tmp_path: Path, wallet_ledgers) -> None:
    two = LakeSchema(ledgers_per_file=2, files_per_partition=2)
    root = _lake(tmp_path, wallet_ledgers, two)
    path = _put(root, two, 63092984, [wallet_ledgers[63092984]])  # the 63092984-63092985 batch holds only 84
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(root)
    assert (err.value.key, err.value.sequence) == (str(path), 63092985)
    assert "holds ledgers 63092984-63092984, not ledger 63092985" in str(err.value)


def test_object_holding_a_ledger_its_key_does_not_cover(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    path = _put(root, ONE, 63092985, [wallet_ledgers[63092986]], first=63092986)
    with pytest.raises(LedgerIntegrityError) as err:
        _read(root)
    assert (err.value.key, err.value.sequence) == (str(path), 63092986)
    assert "covers ledgers 63092985-63092985" in str(err.value)


def test_broken_hash_chain(tmp_path: Path, wallet_ledgers) -> None:
    """A ledger whose header (and header hash) is self-consistent but names another predecessor."""
    root = _lake(tmp_path, wallet_ledgers)
    raw = bytearray(wallet_ledgers[63092985])
    peek = peek_header(bytes(raw))
    raw[peek.start + 4 : peek.start + 36] = b"\x11" * 32  # previousLedgerHash
    raw[peek.start - 32 : peek.start] = hashlib.sha256(raw[peek.start : peek.end]).digest()
    forged = bytes(raw)
    assert peek_header(forged).header_hash_ok
    path = _put(root, ONE, 63092985, [forged])
    with pytest.raises(LedgerIntegrityError) as err:
        _read(root)
    assert (err.value.key, err.value.sequence) == (str(path), 63092985)
    assert "previous_ledger_hash 1111" in str(err.value) and "ledger 63092984" in str(err.value)
    # verify=False reads it: the check is the reader's, not the file format's.
    assert [r.sequence for r in LedgerLake(str(root)).read_range(FIRST, LAST, verify=False)] == list(range(FIRST, LAST + 1))


def _forge_previous_hash(raw: bytes) -> bytes:
    """``raw`` with another previousLedgerHash and a header hash recomputed to match."""
    out = bytearray(raw)
    peek = peek_header(raw)
    out[peek.start + 4 : peek.start + 36] = b"\x11" * 32
    out[peek.start - 32 : peek.start] = hashlib.sha256(out[peek.start : peek.end]).digest()
    assert peek_header(bytes(out)).header_hash_ok
    return bytes(out)


@pytest.mark.parametrize("verify", [True, False])
def test_broken_hash_chain_between_chunks(tmp_path: Path, wallet_ledgers, verify: bool) -> None:
    """Each chunk's worker checks the chain from the ledger before the chunk: a chunk that does not chain to
    the one before is never committed."""
    from cdp_ray.pipeline.config import PipelineConfig
    from cdp_ray.pipeline.runner import run_pipeline

    root = _lake(tmp_path / "lake", wallet_ledgers)
    _put(root, ONE, 63092985, [_forge_previous_hash(wallet_ledgers[63092985])])
    cfg = PipelineConfig.model_validate({
        "name": "chain",
        "source": {"uri": str(root), "start": FIRST, "end": 63092985, "network": "pubnet", "verify": verify},
        "processors": ["ledgers"],
        "sinks": [{"parquet": str(tmp_path / "out")}],
        "options": {"ledgers_per_task": 5},  # chunks 63092982-84 and 63092985-85: the forged ledger is alone
    })
    if not verify:
        assert run_pipeline(cfg, engine="local").ledgers == 4
        return
    with pytest.raises(LedgerIntegrityError) as err:
        run_pipeline(cfg, engine="local")
    assert err.value.sequence == 63092985
    assert "previous_ledger_hash 1111" in str(err.value) and "hash of ledger 63092984" in str(err.value)
    assert sorted(p.name for p in (tmp_path / "out" / "ledgers").glob("*.parquet")) == ["0063092982-0063092984.parquet"]


def test_chain_is_checked_from_the_ledger_before_the_range(tmp_path: Path, wallet_ledgers) -> None:
    """A run starting at the forged ledger checks it against the lake's ledger before the range."""
    from cdp_ray.pipeline.config import PipelineConfig
    from cdp_ray.pipeline.runner import run_pipeline

    root = _lake(tmp_path / "lake", wallet_ledgers)
    _put(root, ONE, 63092985, [_forge_previous_hash(wallet_ledgers[63092985])])
    doc = {"name": "chain", "source": {"uri": str(root), "start": 63092985, "end": 63092986, "network": "pubnet"},
           "processors": ["ledgers"], "sinks": [{"parquet": str(tmp_path / "out")}]}
    with pytest.raises(LedgerIntegrityError) as err:
        run_pipeline(PipelineConfig.model_validate(doc), engine="local")
    assert err.value.sequence == 63092985 and "hash of ledger 63092984" in str(err.value)
    first = {**doc, "source": {**doc["source"], "start": FIRST, "end": FIRST + 1}}
    assert run_pipeline(PipelineConfig.model_validate(first), engine="local").ledgers == 2, \
        "the lake's first ledger has no ledger before it to check"


def test_header_hash_that_does_not_verify(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    raw = bytearray(wallet_ledgers[63092983])
    raw[100] ^= 0xFF  # inside the header, after the hashes: the entry hash no longer matches
    path = _put(root, ONE, 63092983, [bytes(raw)])
    with pytest.raises(LedgerIntegrityError) as err:
        _read(root)
    assert (err.value.key, err.value.sequence) == (str(path), 63092983)
    assert "is not the sha256 of the header" in str(err.value) and "re-export" in err.value.hint


def test_wrong_network_names_the_detected_one(tmp_path: Path, wallet_ledgers) -> None:
    root = _lake(tmp_path, wallet_ledgers)
    (root / ".config.json").unlink()  # no recorded network: the mismatch is found while decoding
    with pytest.raises(NetworkMismatchError) as err:
        cdp_ray.load("ledgers", LakeSource(uri=str(root), start=FIRST, end=FIRST, network="testnet"))
    assert (err.value.passphrase, err.value.detected, err.value.sequence) == (TESTNET, PUBNET, FIRST)
    assert f"the ledger matches {PUBNET!r}" in str(err.value)


def test_nonexistent_lake_root(tmp_path: Path) -> None:
    for layout in ("auto", "lake", "files"):
        with pytest.raises(LakeError) as err:
            LakeSource(uri=str(tmp_path / "nope"), start=5, end=6, layout=layout).open().keys_for_range(5, 6)
        assert f"lake root '{tmp_path / 'nope'}' does not exist" in str(err.value), layout


def test_directory_without_ledgers(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LakeError) as err:
        LakeSource(uri=str(tmp_path), start=5, end=6).open().keys_for_range(5, 6)
    assert "neither a SEP-54 lake" in str(err.value) and "1 files" in str(err.value)


def test_ledger_absent_from_a_files_directory(stellar_data: Path) -> None:
    lake = LedgerLake(str(stellar_data / "stellar-go-testbucket"), layout="files")
    with pytest.raises(LedgerNotFoundError) as err:
        list(lake.read_range(998, 1000))
    assert err.value.sequence == 1000 and "files hold ledgers 997-999" in str(err.value)


def test_invalid_config_json(tmp_path: Path) -> None:
    (tmp_path / ".config.json").write_text("{not json")
    with pytest.raises(LakeError) as err:
        LedgerLake(str(tmp_path))
    assert ".config.json is not valid JSON" in str(err.value)


def test_invalid_config_json_schema(tmp_path: Path) -> None:
    (tmp_path / ".config.json").write_text('{"ledgersPerBatch": 0, "batchesPerPartition": 64000}')
    with pytest.raises(LakeError) as err:
        LedgerLake(str(tmp_path))
    assert "invalid schema (ledgers_per_file: Input should be greater than or equal to 1)" in str(err.value)
