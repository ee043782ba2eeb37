"""A worker's unexpected exception comes back as a typed ProcessingError naming its ledger range."""

from __future__ import annotations

import pytest

from cdp_ray.errors import CdpRayError, LedgerNotFoundError, ProcessingError
from cdp_ray.pipeline import runner
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.planning import Chunk
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE


def _worker(tmp_path) -> runner.ChunkWorker:
    cfg = PipelineConfig.model_validate(
        {
            "name": "errors",
            "source": {"uri": str(SAMPLE_LAKE), "start": SAMPLE_RANGE[0], "end": SAMPLE_RANGE[1], "network": "pubnet"},
            "processors": ["ledgers"],
            "sinks": [{"parquet": str(tmp_path / "out")}],
        }
    )
    return runner.ChunkWorker(cfg.model_dump_json())


def test_unexpected_exception_becomes_processing_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ledgers, steps):
        raise KeyError("no such column")

    monkeypatch.setattr(runner, "run_processors", broken)
    start, end = SAMPLE_RANGE[0], SAMPLE_RANGE[0] + 3
    out = _worker(tmp_path).process_chunk(Chunk(start, end))
    assert (out["status"], out["start"], out["end"]) == ("failed", start, end)
    err = runner._unpack_error(out["exception"])
    assert isinstance(err, ProcessingError) and isinstance(err, CdpRayError)
    assert (err.start, err.end, err.error_type) == (start, end, "KeyError")
    assert err.message == f"ledgers {start}-{end}: unexpected KeyError: 'no such column'"
    assert "in broken" in err.traceback and err.traceback.rstrip().endswith("KeyError: 'no such column'")
    assert "--verbose" in err.hint


def test_cdp_ray_errors_come_back_as_themselves(tmp_path) -> None:
    end = SAMPLE_RANGE[1] + 5  # past the sample lake's last ledger
    out = _worker(tmp_path).process_chunk(Chunk(SAMPLE_RANGE[1] + 1, end))
    err = runner._unpack_error(out["exception"])
    assert type(err) is LedgerNotFoundError and err.sequence == SAMPLE_RANGE[1] + 1
    assert list((tmp_path / "out").rglob("*.parquet")) == [], "a failed chunk commits nothing"
