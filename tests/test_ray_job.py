"""`ray job submit` as the README says runs the compiled decoder, and says so (issue 14, item 4).

A private Ray is started for this module (`ray start --head --block` with its own --temp-dir and
ports, stopped by its PID); the package is "installed" on it through its PYTHONPATH, as ray-cluster.yaml
installs it on every node. The job runs from a copy of the checkout without build outputs, as git (and
so Ray's upload) sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
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


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def private_ray(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    gcs, dash, client, agent, agent_grpc, metrics = _free_ports(6)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(tmp),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # `python` is this one
    env.pop("RAY_ADDRESS", None)
    log = open(tmp / "ray-start.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--temp-dir", str(tmp / "t"), "--port", str(gcs), "--num-cpus", "2",
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "ray-start.log").read_text()[-3000:]
            ok = subprocess.run([RAY, "job", "list", "--address", url], env=env, capture_output=True)
            if ok.returncode == 0:
                break
            assert time.monotonic() < deadline, ok.stderr.decode()[-2000:]
            time.sleep(2)
        yield url, env
    finally:
        proc.send_signal(signal.SIGTERM)  # --block stops every process it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


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
