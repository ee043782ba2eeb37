"""Tool cards and default policies are package data: an installed package estimates and starts the
control plane exactly as the checkout does (issue 14, item 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_ray.control.estimate import estimate, probe_volume
from cdp_ray.control.policies import load_policies
from cdp_ray.control.settings import DEFAULT_POLICIES, DEFAULT_TOOLCARDS, ControlSettings
from cdp_ray.control.toolcards import current_cards, load_cards
from cdp_ray.pipeline.config import parse_pipeline
from cdp_ray.sample import sample_pipeline_path

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_found_through_importlib_resources():
    from importlib.resources import files

    pkg = Path(str(files("cdp_ray")))
    assert DEFAULT_TOOLCARDS == pkg / "toolcards" and DEFAULT_POLICIES == pkg / "policies"
    cards = load_cards(DEFAULT_TOOLCARDS)
    assert "processor.operations" in cards and cards["processor.operations"].cost["rows_per_ledger"] > 100
    assert [r.name for r in load_policies(DEFAULT_POLICIES)]  # the shipped defaults, not an empty list
    settings = ControlSettings()
    assert settings.toolcards_dir == DEFAULT_TOOLCARDS and settings.policies_dir == DEFAULT_POLICIES


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The package as a wheel lays it out: setuptools' ``build_py`` copies packages and package data
    as declared in pyproject.toml (what ``bdist_wheel`` zips), without compiling the extensions."""
    out = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out), "build_py", "--build-lib",
                    str(out / "lib")], cwd=ROOT, check=True, capture_output=True)
    return out / "lib"


def test_build_ships_cards_and_policies(built):
    for sub, pattern in (("toolcards", "*.json"), ("policies", "*.yaml")):
        shipped = sorted(p.name for p in (built / "cdp_ray" / sub).glob(pattern))
        assert shipped and shipped == sorted(p.name for p in (ROOT / "cdp_ray" / sub).glob(pattern))


def test_installed_layout_estimates_the_sample_as_the_checkout(built, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_RAY_CONTROL", "CDP_RAY_SAMPLE"))}
    env["PYTHONPATH"] = str(built)  # the built copy only, run from elsewhere than the checkout
    where = subprocess.run([sys.executable, "-c", "import cdp_ray; print(cdp_ray.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(built)
    got = json.loads(subprocess.run([sys.executable, "-m", "cdp_ray.cli.main", "estimate", "sample", "--json"],
                                    cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout)

    cfg = parse_pipeline(str(sample_pipeline_path()))
    settings = ControlSettings()
    cards = current_cards(settings.toolcards_dir)
    want = estimate(cfg, cards, settings.rates, default_workers=settings.default_workers,
                    probe=probe_volume(cfg, cards, settings.probe_objects)).model_dump(mode="json")
    for key in ("ledgers", "chunks", "objects", "read_bytes", "xdr_bytes", "rows", "output_bytes", "bytes_written",
                "cpu_seconds", "memory_bytes_per_worker", "basis"):
        assert got[key] == want[key], key
    # the measured sample, not the defaults an uninstalled card directory falls back to (~1,000 rows)
    assert got["rows"]["operations"] > 5000
