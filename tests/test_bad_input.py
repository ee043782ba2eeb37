"""Bad input found adversarially (issue 15, item 10): each case is a typed error that names the input
and the fix, and the CLI exits 2 for bad input; a gap in the lake can be quarantined."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
import zstandard
from typer.testing import CliRunner

from cdp_ray.cli.main import EXIT_BAD_INPUT, app
from cdp_ray.errors import ConfigError, CorruptLedgerFileError, LedgerGapError, LedgerNotFoundError
from cdp_ray.lake import LedgerLake
from cdp_ray.pipeline.config import PipelineConfig, parse_pipeline, validate_spec
from cdp_ray.pipeline.runner import run_pipeline
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE

FIRST, LAST = SAMPLE_RANGE  # 63092982-63092991, one ledger per object


@pytest.fixture
def lake(tmp_path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(SAMPLE_LAKE, root)
    return root


def _object(root: Path, seq: int) -> Path:
    (path,) = root.glob(f"*/*--{seq}.xdr.zst")
    return path


def _read(root: Path, start: int = FIRST, end: int = LAST) -> list[int]:
    return [r.sequence for r in LedgerLake(str(root)).read_range(start, end)]


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


# ---- a missing object inside the lake is a gap, not the lake's end ---------------------------------


def test_missing_object_mid_range_is_a_gap(lake):
    path = _object(lake, 63092985)
    path.unlink()
    with pytest.raises(LedgerGapError) as err:
        _read(lake)
    assert (err.value.sequence, err.value.key, err.value.later) == (63092985, str(path), 63092986)
    assert str(err.value).startswith(f"ledger 63092985 is missing: expected object '{path}' does not exist, "
                                     "although the lake holds ledger 63092986 after it (a gap in the lake)")
    assert "exported that far" not in err.value.hint and "on_error=quarantine" in err.value.hint
    with pytest.raises(LedgerGapError):  # the gap is the range's last ledger: the object after it still counts
        _read(lake, FIRST, 63092985)


def test_a_gap_of_several_objects_is_found_from_the_range_end(lake):
    for seq in (63092985, 63092986, 63092987):
        _object(lake, seq).unlink()
    with pytest.raises(LedgerGapError) as err:
        _read(lake, FIRST, 63092989)
    assert (err.value.sequence, err.value.later) == (63092985, 63092989)


def test_range_past_the_lake_end_is_not_a_gap(lake):
    with pytest.raises(LedgerNotFoundError) as err:
        _read(lake, LAST, LAST + 1)
    assert type(err.value) is LedgerNotFoundError and err.value.sequence == LAST + 1
    assert "exported that far" in err.value.hint


def _pipeline(lake: Path, out: Path, on_error: str) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "gap", "source": {"uri": str(lake), "start": FIRST, "end": LAST, "network": "pubnet"},
        "processors": ["ledgers"], "sinks": [{"type": "parquet", "uri": str(out)}],
        "options": {"ledgers_per_task": 2, "on_error": on_error}})


def test_a_gap_is_quarantined_under_on_error_quarantine(lake, tmp_path):
    path = _object(lake, 63092985)
    path.unlink()
    summary = run_pipeline(_pipeline(lake, tmp_path / "out", "quarantine"), engine="local")
    # the chunk holding the gap, and the next one, whose hash chain starts from the missing ledger
    assert [(d.start, d.end, d.ledger, d.key, d.error) for d in summary.quarantined] == [
        (63092984, 63092985, 63092985, str(path), "LedgerGapError"),
        (63092986, 63092987, 63092985, str(path), "LedgerGapError")]
    assert "a gap in the lake" in summary.quarantined[0].message
    seqs = sorted(pq.read_table(tmp_path / "out" / "ledgers").column("sequence").to_pylist())
    assert seqs == [63092982, 63092983, 63092988, 63092989, 63092990, 63092991]


def test_a_gap_fails_a_ray_run_with_its_hint(lake, tmp_path, ray_cluster):
    _object(lake, 63092985).unlink()
    with pytest.raises(LedgerGapError) as err:
        run_pipeline(_pipeline(lake, tmp_path / "out", "fail"), engine="ray")
    assert err.value.sequence == 63092985 and "re-export the missing object" in err.value.hint


# ---- corrupt objects say what they hold -------------------------------------------------------------


def test_empty_file(lake):
    path = _object(lake, 63092985)
    path.write_bytes(b"")
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(lake)
    assert err.value.key == str(path) and err.value.reason == "the file is empty (0 bytes): an interrupted export or upload"


def test_valid_zstd_of_garbage(lake):
    path = _object(lake, 63092985)
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(range(256)) * 12))
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(lake)
    assert err.value.key == str(path)
    assert err.value.reason == ("decompresses fine to 3072 bytes, but they are not ledgers: no LedgerCloseMetaBatch "
                                "header, LedgerCloseMeta, xdr.Stream or base64 lines (first bytes 000102030405060708090a0b)")


def test_random_zstd_content_with_a_stream_like_first_byte(lake):
    """Content whose first bit looks like an xdr.Stream record mark is no longer called a truncated stream."""
    path = _object(lake, 63092985)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\xc0\x40\x03\xa5" + bytes(2000)))
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(lake)
    assert "not ledgers" in err.value.reason and "xdr.Stream record" not in err.value.reason


def test_batch_header_followed_by_garbage(lake):
    path = _object(lake, 63092985)
    path.write_bytes(zstandard.ZstdCompressor().compress(struct.pack(">III", 63092985, 63092985, 1) + b"\x07" * 400))
    with pytest.raises(CorruptLedgerFileError) as err:
        _read(lake)
    assert err.value.key == str(path)
    assert err.value.reason == ("a LedgerCloseMetaBatch header (ledgers 63092985-63092985) followed by bytes that are "
                                "not a LedgerCloseMeta (unknown LedgerCloseMeta version 117901063)")


def test_corrupt_files_are_quarantined_like_before(lake, tmp_path):
    _object(lake, 63092983).write_bytes(b"")
    _object(lake, 63092988).write_bytes(zstandard.ZstdCompressor().compress(bytes(300)))
    summary = run_pipeline(_pipeline(lake, tmp_path / "out", "quarantine"), engine="local")
    assert [(d.start, d.end, d.ledger, d.error) for d in summary.quarantined] == [
        (63092982, 63092983, 63092983, "CorruptLedgerFileError"), (63092984, 63092985, 63092983, "CorruptLedgerFileError"),
        (63092988, 63092989, 63092988, "CorruptLedgerFileError")]
    assert "the file is empty" in summary.quarantined[0].message and "not ledgers" in summary.quarantined[2].message


# ---- configuration -----------------------------------------------------------------------------------


def test_ledger_sequences_beyond_uint32_are_refused_by_validate(tmp_path):
    spec = f"lake://{SAMPLE_LAKE}?start={FIRST}&end={2**32} | ledgers | parquet://{tmp_path}/out"
    [problem] = validate_spec(spec).problems
    assert problem.path == "source.end" and "4294967295" in problem.message
    res = _cli("validate", spec)
    assert res.exit_code == EXIT_BAD_INPUT
    assert validate_spec(spec.replace(str(2**32), str(2**32 - 1))).problems == []


def test_misspelled_sink_type(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "name": "p", "source": {"uri": str(SAMPLE_LAKE), "start": FIRST, "end": FIRST, "network": "pubnet"},
        "processors": ["ledgers"], "sinks": [{"typ": "parquet", "uri": str(tmp_path / "out")}]}, sort_keys=False))
    res = _cli("validate", str(path), "--json")
    assert res.exit_code == EXIT_BAD_INPUT
    [problem] = json.loads(res.stdout)["problems"]
    assert problem["path"] == "sinks[0]" and problem["line"] is not None
    assert problem["message"] == "the sink has no `type` ('typ': a misspelling of `type`?)"
    assert "parquet, postgres" in problem["hint"] and "None" not in res.stdout
    with pytest.raises(ConfigError, match="the sink has no `type`"):
        PipelineConfig.model_validate({"name": "p", "source": {"uri": str(SAMPLE_LAKE), "start": FIRST, "end": FIRST},
                                       "processors": ["ledgers"], "sinks": [{"typ": "parquet", "uri": "out"}]})


def test_unset_variables_name_the_variable_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("CDP_TEST_UNSET_OUT", raising=False)
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nsource: {{uri: {SAMPLE_LAKE}, start: {FIRST}, end: {FIRST}}}\nprocessors: [ledgers]\n"
                    "sinks:\n  - parquet://${CDP_TEST_UNSET_OUT}/x\n")
    res = _cli("validate", str(path))
    assert res.exit_code == EXIT_BAD_INPUT
    assert f"{path}:5: error: pipeline: environment variable CDP_TEST_UNSET_OUT is not set" in res.output
    assert "export CDP_TEST_UNSET_OUT=... or write ${CDP_TEST_UNSET_OUT:-default}" in res.output
    assert ":None" not in res.output
    run = _cli("run", str(path), "--engine", "local", "--json")
    assert run.exit_code == EXIT_BAD_INPUT and json.loads(run.stdout)["problems"][0]["line"] == 5
    with pytest.raises(ConfigError, match="CDP_TEST_UNSET_OUT is not set"):
        parse_pipeline(str(path))
    monkeypatch.setenv("CDP_TEST_UNSET_OUT", str(tmp_path))
    assert parse_pipeline(str(path)).sinks[0].uri == f"{tmp_path}/x"
