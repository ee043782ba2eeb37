"""`ray job submit` as the README says runs the compiled decoder, and says so (issue 14, item 4).

A private Ray head (the session's ``private_ray`` fixture: ``ray start --head --block`` with its own
--temp-dir and ports, stopped by its PID) runs the jobs; the package is "installed" on it through its PYTHONPATH, as ray-cluster.yaml
installs it on every node. The job runs from a copy of the checkout without build outputs, as git (and
so Ray's upload) sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdp_ray.sample import SAMPLE_LAKE
from cdp_ray.xdr import fast

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not fast.available(), reason="the compiled decoder is not built")]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The files git tracks (what a clone holds and Ray uploads): no compiled extensions."""
    dst = tmp_path_factory.mktemp("checkout") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    assert not list(dst.rglob("*.so"))
    return dst


def _submit(url: str, env: dict, cwd: Path, how: list[str], out: Path) -> tuple[dict, str]:
    spec = f"lake://{SAMPLE_LAKE}?start=63092982&end=63092984 | ledgers | transactions | parquet://{out}"
    proc = subprocess.run([RAY, "job", "submit", "--address", url, *how, "--", "python", "jobs/backfill.py", spec,
                           "--workers", "1"], cwd=cwd, env=env, capture_output=True, text=True, timeout=420)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    doc = next(json.loads(line) for line in reversed(proc.stdout.splitlines()) if line.startswith('{"ok"'))
    return doc, text


def test_readme_recipe_runs_the_compiled_decoder(private_ray, checkout, tmp_path):
    url, env = private_ray
    doc, text = _submit(url, env, checkout, ["--runtime-env", "jobs/runtime_env.yaml"], tmp_path / "out")
    assert doc["ok"] and doc["ledgers"] == 3 and doc["rows"]["ledgers"] == 3
    assert doc["decoders"] == {"native": doc["chunks"]} and doc["decoder_warnings"] == []
    assert f"[backfill] decoder: native ({doc['chunks']} chunks)" in text


def test_a_bare_working_dir_upload_warns_with_the_reason(private_ray, checkout, tmp_path):
    """The old recipe shadows the installed package with the uploaded copy: it still runs, loudly."""
    url, env = private_ray
    doc, text = _submit(url, env, checkout, ["--working-dir", "."], tmp_path / "out")
    assert doc["ok"] and doc["rows"]["ledgers"] == 3
    assert doc["decoders"] == {"sdk": doc["chunks"]}
    [warning] = doc["decoder_warnings"]
    assert "the compiled extension _fastxdr is not in" in warning and "circular import" not in warning
    assert "--runtime-env jobs/runtime_env.yaml" in warning
    assert "[backfill] WARNING: decoding with stellar-sdk" in text
