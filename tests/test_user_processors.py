"""User processors on the cluster (issue 14, item 7): named by import path in a pipeline, or declared
by an installed package's ``cdp_ray.processors`` entry point; Ray workers that cannot import the user's
module get it shipped (runtime_env ``py_modules``)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cdp_ray.cli.main import app
from cdp_ray.control.toolcards import declared_cards
from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import parse_pipeline
from cdp_ray.pipeline.runner import process_local, run_pipeline
from cdp_ray.processors import base
from cdp_ray.processors.base import REGISTRY, get_processor, load_entry_points, shipped_modules
from cdp_ray.sample import SAMPLE_LAKE

START, END = 63092982, 63092987

MODULE = '''
import os

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from cdp_ray.processors import col, processor

SIZES = pa.schema([col("sequence", pa.uint32(), "ledger", nullable=False),
                   col("tx_count", pa.int32(), "transactions, failed included"),
                   col("pid", pa.int64(), "process that built the row")])


@processor("{tag}_sizes", schema=SIZES, primary_key=("sequence",), description="Transactions per ledger.")
def sizes(ledgers, config):
    return [{{"sequence": lg.sequence, "tx_count": len(lg.transactions), "pid": os.getpid()}} for lg in ledgers]


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: int = 1


@processor("{tag}_scaled", schema=pa.schema([col("sequence", pa.uint32(), "ledger", nullable=False),
                                            col("scaled", pa.int64(), "sequence times factor")]),
           primary_key=("sequence",), config=Scale, description="Sequence times a factor.")
class Scaled:
    def __call__(self, ledgers, config):
        return [{{"sequence": lg.sequence, "scaled": lg.sequence * config.factor}} for lg in ledgers]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module in a directory of its own, importable by this process only (Ray's workers started
    before it existed); its processors are unregistered afterwards."""
    tag = f"u{uuid.uuid4().hex[:8]}"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{tag}_procs.py").write_text(MODULE.format(tag=tag))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield tag
    for name in [n for n in REGISTRY if n.startswith(tag)]:
        del REGISTRY[name]
    sys.modules.pop(f"{tag}_procs", None)


def _pipeline(tmp_path: Path, tag: str) -> Path:
    doc = {"name": f"{tag}-pipe",
           "source": {"uri": str(SAMPLE_LAKE), "start": START, "end": END, "network": "pubnet"},
           "processors": [f"{tag}_procs:sizes", {"name": f"{tag}_procs:Scaled", "config": {"factor": 3}}],
           "sinks": [{"type": "parquet", "uri": str(tmp_path / "out")}],
           "options": {"ledgers_per_task": 2, "workers": 2}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_import_path_in_yaml_runs_on_ray_workers(user_module, tmp_path, ray_cluster):
    tag = user_module
    cfg = parse_pipeline(str(_pipeline(tmp_path, tag)))
    assert [(s.name, s.path, s.config) for s in cfg.processors] == [
        (f"{tag}_sizes", f"{tag}_procs:sizes", {}), (f"{tag}_scaled", f"{tag}_procs:Scaled", {"factor": 3})]
    procs = [get_processor(s.name) for s in cfg.processors]
    assert shipped_modules(procs) == [str((tmp_path / "mods" / f"{tag}_procs.py").resolve())]
    assert shipped_modules([get_processor("ledgers")]) == []  # cdp-ray's own need no shipping

    summary = run_pipeline(cfg, engine="ray")

    assert summary.ledgers == END - START + 1 and summary.chunks == 3
    sizes = pq.read_table(tmp_path / "out" / f"{tag}_sizes").sort_by("sequence").to_pydict()
    scaled = pq.read_table(tmp_path / "out" / f"{tag}_scaled").sort_by("sequence").to_pydict()
    assert sizes["sequence"] == list(range(START, END + 1))
    assert scaled == {"sequence": list(range(START, END + 1)), "scaled": [3 * s for s in range(START, END + 1)]}
    builtin = process_local(parse_pipeline(
        f"lake://{SAMPLE_LAKE}?start={START}&end={END} | ledgers | parquet://{tmp_path / 'unused'}"))["ledgers"]
    by_seq = dict(zip(builtin["sequence"].to_pylist(),
                      (a + b for a, b in zip(builtin["successful_transaction_count"].to_pylist(),
                                             builtin["failed_transaction_count"].to_pylist()))))
    assert sizes["tx_count"] == [by_seq[s] for s in sizes["sequence"]]
    assert sys.modules[f"{tag}_procs"].os.getpid() not in set(sizes["pid"])  # built on Ray workers


def test_cli_lists_and_shows_a_processor_by_import_path(user_module):
    tag = user_module
    res = CliRunner().invoke(app, ["processors", f"{tag}_procs:Scaled", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["name"] == f"{tag}_scaled" and [c["name"] for c in doc["columns"]] == ["sequence", "scaled"]
    res = CliRunner().invoke(app, ["processors"])
    assert re.search(rf"^{tag}_scaled +Sequence times a factor$", res.stdout, re.M)
    assert declared_cards()[f"processor.{tag}_scaled"].config_schema["properties"]["factor"]["default"] == 1


def test_bad_import_paths_are_config_errors(user_module):
    tag = user_module
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod_x'") as err:
        get_processor("no_such_mod_x:fn")
    assert "PYTHONPATH" in err.value.hint
    with pytest.raises(ConfigError, match=f"module '{tag}_procs' has no 'nope'"):
        get_processor(f"{tag}_procs:nope")
    with pytest.raises(ConfigError, match="is not a processor"):
        get_processor(f"{tag}_procs:Scale")


def test_the_control_plane_imports_no_module_a_client_names(user_module):
    from cdp_ray.control.plans import parse_desired

    tag = user_module
    doc = {"name": "p", "source": {"uri": str(SAMPLE_LAKE), "start": START, "end": END, "network": "pubnet"},
           "processors": [f"{tag}_procs:sizes"], "sinks": ["parquet:///tmp/x"]}
    for sent in (doc, {**doc, "processors": [{"name": "ledgers", "path": f"{tag}_procs:sizes"}]},
                 f"lake://{SAMPLE_LAKE}?start={START}&end={END} | {tag}_procs:sizes | parquet:///tmp/x"):
        with pytest.raises(ConfigError, match="refused: the control plane runs registered processors only"):
            parse_desired(sent)
    assert f"{tag}_procs" not in sys.modules
    get_processor(f"{tag}_procs:sizes")  # outside the control plane, the same path imports


def test_entry_point_processors_are_registered_listed_and_carded(tmp_path, monkeypatch):
    tag = f"ep{uuid.uuid4().hex[:8]}"
    site = tmp_path / "site"
    (site / f"{tag}_pkg").mkdir(parents=True)
    (site / f"{tag}_pkg" / "__init__.py").write_text(MODULE.format(tag=tag))
    dist = site / f"{tag}_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {tag}-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""
        [cdp_ray.processors]
        sizes = {tag}_pkg:sizes
        broken = {tag}_pkg:missing
    """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    try:
        with pytest.warns(UserWarning, match=f"broken = '{tag}_pkg:missing'"):
            load_entry_points()
        assert get_processor(f"{tag}_sizes").fn.__module__ == f"{tag}_pkg"
        assert f"processor.{tag}_sizes" in declared_cards()
        res = CliRunner().invoke(app, ["processors"])
        assert re.search(rf"^{tag}_sizes +Transactions per ledger$", res.stdout, re.M)
    finally:
        for name in [n for n in REGISTRY if n.startswith(tag)]:
            del REGISTRY[name]
        sys.modules.pop(f"{tag}_pkg", None)
