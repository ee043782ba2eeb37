"""`cdp-ray plan / approve / apply / status / estimate / tools` against a live control plane."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.control import ControlSettings
from cdp_ray.control.server import BackgroundServer
from cdp_ray.sample import SAMPLE_LAKE

runner = CliRunner()
ONE_LINER = f"lake://{SAMPLE_LAKE}?start=63092982&end=63092985 | ledgers | parquet://{{out}}"


class RecordingExecutor:
    kind = "recording"

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, plan, cfg, pipeline_id):
        self.submitted.append(pipeline_id)
        return {"executor": self.kind}

    def shutdown(self) -> None:
        pass


def test_plan_approve_apply_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "p.yaml").write_text(yaml.safe_dump({"policies": [{"name": "all", "rule": "approval_required"}]}))
    settings = ControlSettings(database=str(tmp_path / "db.sqlite3"), policies_dir=tmp_path / "pol")
    ex = RecordingExecutor()
    spec = ONE_LINER.format(out=tmp_path / "out")
    with BackgroundServer(settings, executor=ex) as srv:
        url = ["--url", srv.url]
        res = runner.invoke(app, ["plan", spec, *url])
        assert res.exit_code == 0, res.output
        assert "pending_approval" in res.output and "process ledgers 63092982-63092985 (4)" in res.output
        plan_id = res.output.split()[1].rstrip(":")
        res = runner.invoke(app, ["apply", plan_id, *url, "--json"])
        assert res.exit_code == 1 and json.loads(res.output)["error"] == "ControlPlaneError"
        assert runner.invoke(app, ["approve", plan_id, *url]).output.strip() == f"plan {plan_id}: approved"
        res = runner.invoke(app, ["apply", plan_id, *url, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["pipeline_id"] == ex.submitted[0]
        res = runner.invoke(app, ["tools", "list", *url, "--json"])
        assert "processor.ledgers" in {t["id"] for t in json.loads(res.output)}


def test_estimate_and_tools_offline(tmp_path: Path) -> None:
    res = runner.invoke(app, ["estimate", ONE_LINER.format(out=tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.output)
    assert est["ledgers"] == 4 and est["rows"] == {"ledgers": 4} and est["chunks"] == 1
    res = runner.invoke(app, ["tools", "show", "processor.ledgers"])
    assert json.loads(res.output)["primary_key"] == ["sequence"]
    assert runner.invoke(app, ["tools", "show", "processor.nope"]).exit_code == 2
