"""The CLI as a shell sees it: completion, `doctor`, Ctrl-C at any moment, exit 2 for bad input, metavars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, app
from cdp_ray.sample import SAMPLE_LAKE

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
SAMPLE_SPEC = f"lake://{SAMPLE_LAKE}?start=63092982&end=63092983 | ledgers"


def cli(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), catch_exceptions=False, prog_name="cdp-ray", env=env)


def test_shell_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # --show-completion SHELL, not the parent's shell
    script = cli("--show-completion", "bash")
    assert script.exit_code == 0, script.output
    assert "complete -o default -F _cdp_ray_completion cdp-ray" in script.output
    words = cli(env={"_CDP_RAY_COMPLETE": "complete_bash", "COMP_WORDS": "cdp-ray do", "COMP_CWORD": "1"})
    assert words.output.split() == ["doctor", "docs"]
    opts = cli(env={"_CDP_RAY_COMPLETE": "complete_bash", "COMP_WORDS": "cdp-ray run --dry", "COMP_CWORD": "2"})
    assert opts.output.split() == ["--dry-run"]


def test_help_shows_click_metavars() -> None:
    text = cli("run", "--help", env={"COLUMNS": "200"}).output
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ --")}
    assert "<" not in text and "BOOLEAN" not in text
    assert lines["--workers"].split()[2:4] == ["INTEGER", "RANGE"] and lines["--start"].split()[2] == "INTEGER"
    assert lines["--start-time"].split()[2] == "TEXT"
    assert lines["--resume"].split()[2] == "skip" and lines["--json"].split()[2] == "print"  # flags: no metavar
    assert "│   spec      TEXT  pipeline YAML" in text


def test_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from cdp_ray.xdr.fast import resolve_engine

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("CDP_RAY_XDR_ENGINE", raising=False)
    monkeypatch.setattr("ray._private.utils.read_ray_address", lambda temp_dir=None: None)
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", lambda: [])  # other Rays on this machine
    r = cli("doctor", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["ok"] is True and doc["versions"]["ray"] == ray.__version__ and doc["versions"]["cdp-ray"] == "0.1.0"
    assert doc["ray"] == {"address": None, "action": "start a local Ray",
                          "why": "no --address, no $RAY_ADDRESS and no cluster started by `ray start` here"}
    assert doc["decoder"]["engine"] == resolve_engine()
    assert doc["lake"] | {"uri": None} == {"pipeline": "sample-core-tables", "uri": None, "first_ledger": 63092982, "ok": True,
                                           "layout": "lake", "closed_at": "2026-06-19T00:20:52Z"}
    human = cli("doctor")
    assert human.exit_code == 0
    assert "decoder: " + resolve_engine() in human.output and "ledger 63092982 closed 2026-06-19T00:20:52Z" in human.output

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.setenv("CDP_RAY_XDR_ENGINE", "sdk")
    doc = json.loads(cli("doctor", "--json").output)
    assert (doc["ok"], doc["ray"]["address"], doc["ray"]["why"], doc["ray"]["reachable"]) == (False, "127.0.0.1:1", "$RAY_ADDRESS", False)
    assert doc["decoder"] == {"engine": "sdk", "why": "$CDP_RAY_XDR_ENGINE=sdk"}
    unreachable = cli("doctor")
    assert unreachable.exit_code == EXIT_FAILED and "NOT reachable" in unreachable.output
    local = json.loads(cli("doctor", "--json", "--address", "local").output)
    assert local["ok"] is True and local["ray"]["why"] == "--address local"
    monkeypatch.setattr("ray._private.utils.read_ray_address", lambda temp_dir=None: "127.0.0.1:1")
    monkeypatch.delenv("RAY_ADDRESS")
    started = json.loads(cli("doctor", "--json", "--address", "local").output)["ray"]
    assert started["address"] is None  # --address local wins over a `ray start` cluster
    assert json.loads(cli("doctor", "--json").output)["ray"]["why"].startswith("the cluster `ray start` started")
    monkeypatch.setattr("ray._private.utils.read_ray_address", lambda temp_dir=None: None)
    monkeypatch.setattr("ray._private.services.find_gcs_addresses", lambda: ["127.0.0.1:1"])
    running = json.loads(cli("doctor", "--json").output)["ray"]
    assert running["address"] is None  # another Ray merely running here is not joined

    gone = cli("doctor", "--json", "lake:///no/such/lake?start=5&end=6 | ledgers")
    assert gone.exit_code == EXIT_FAILED
    lake = json.loads(gone.output)["lake"]
    assert (lake["ok"], lake["error"], lake["message"]) == (False, "LakeRootNotFoundError", "lake root '/no/such/lake' does not exist")
    assert cli("doctor", "lake:///x?start=5 | ledgers").exit_code == EXIT_BAD_INPUT


# ---- Ctrl-C -------------------------------------------------------------------------------------

_PRELUDE = "import atexit, builtins, os, signal, sys, time\nsys.argv = ['cdp-ray', *sys.argv[1:]]\n"
INTERRUPT_AT = {
    # SIGINT while the CLI imports Typer (start-up, before any command runs)
    "start-up": _PRELUDE + (
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'typer':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "from cdp_ray.cli import main\nmain()\n"),
    # SIGINT inside a command (reading the lake)
    "command": _PRELUDE + (
        "import cdp_ray.lake.store as store\n"
        "real = store.LedgerLake.read_range\n"
        "def read(self, *a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "    return real(self, *a, **k)\n"
        "store.LedgerLake.read_range = read\n"
        "from cdp_ray.cli import main\nmain()\n"),
    # SIGINT after the command, while the interpreter exits (Ray's and others' atexit hooks)
    "exit": _PRELUDE + (
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
        "from cdp_ray.cli import main\nmain()\n"),
}


@pytest.mark.parametrize("moment", list(INTERRUPT_AT))
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(tmp_path: Path, moment: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["validate", "--check-source", SAMPLE_SPEC]
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_AT[moment], *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == EXIT_INTERRUPTED, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "interrupted"
    if moment == "exit":
        assert "ok: oneliner: ledgers 63092982-63092983" in proc.stdout  # the command itself completed


def test_ctrl_c_during_a_run_keeps_committed_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    import cdp_ray.pipeline.runner as runner_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "run_pipeline", interrupted)
    r = cli("run", SAMPLE_SPEC + " | parquet://out", "--engine", "local")
    assert r.exit_code == EXIT_INTERRUPTED
    assert "interrupted: committed ranges are kept; rerun with --resume to continue" in r.output
    j = cli("run", SAMPLE_SPEC + " | parquet://out", "--engine", "local", "--json")
    assert json.loads(j.stdout)["error"] == "Interrupted"


# ---- exit 2: every bad input docs/usage.md names ------------------------------------------------


def _pipeline(path: Path, name: str, out: Path, **options) -> Path:
    path.write_text(yaml.safe_dump({
        "name": name, "source": {"uri": str(SAMPLE_LAKE), "start": 63092982, "end": 63092985},
        "processors": ["ledgers"], "sinks": [{"type": "parquet", "uri": str(out)}], "options": options,
    }))
    return path


def test_bad_input_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    gone = cli("run", "lake:///no/such/lake?start=5&end=6 | ledgers | parquet://out", "--engine", "local", "--json")
    assert gone.exit_code == EXIT_BAD_INPUT
    assert json.loads(gone.stdout)["error"] == "LakeRootNotFoundError"
    cases = {
        "missing lake root (dry run)": ("run", "lake:///no/such/lake?start=5&end=6 | ledgers", "--dry-run"),
        "missing lake root (validate)": ("validate", "--check-source", "lake:///no/such/lake?start=5&end=6 | ledgers"),
        "missing pipeline file": ("run", str(tmp_path / "nope.yaml")),
        "invalid pipeline": ("run", "lake:///x?start=5 | ledgers"),
        "unknown processor": ("run", f"lake://{SAMPLE_LAKE}?start=63092982&end=63092983 | ledgerz"),
        "time outside the lake": ("run", SAMPLE_SPEC, "--start-time", "2030-01-01T00:00:00Z", "--dry-run"),
        "unreadable time": ("run", SAMPLE_SPEC, "--end-time", "yesterday", "--dry-run"),
        "end before start": ("run", SAMPLE_SPEC, "--start", "63092990", "--end", "63092985", "--dry-run"),
        "unknown engine": ("run", SAMPLE_SPEC, "--engine", "spark"),
        "workers below 1": ("run", SAMPLE_SPEC, "--workers", "0"),
        "unknown option": ("run", SAMPLE_SPEC, "--wokers", "2"),
        "unknown template": ("init", "paymnts", "-o", str(tmp_path / "p.yaml")),
    }
    for case, args in cases.items():
        r = cli(*args)
        assert r.exit_code == EXIT_BAD_INPUT, (case, r.exit_code, r.output)
    first = _pipeline(tmp_path / "a.yaml", "a", out)
    assert cli("run", str(first), "--engine", "local").exit_code == 0
    changed = _pipeline(tmp_path / "a.yaml", "a", out, ledgers_per_task=2)
    r = cli("run", str(changed), "--engine", "local", "--resume")
    assert r.exit_code == EXIT_BAD_INPUT and "--force" in r.output  # a changed config without --force
    assert cli("run", str(changed), "--engine", "local", "--resume", "--force").exit_code == 0
    other = _pipeline(tmp_path / "b.yaml", "b", out)
    r = cli("run", str(other), "--engine", "local", "--json")
    assert r.exit_code == EXIT_BAD_INPUT and json.loads(r.stdout)["error"] == "OwnershipError"  # tables of pipeline a
