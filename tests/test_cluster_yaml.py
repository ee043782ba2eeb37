"""ray-cluster.yaml is a valid Ray cluster launcher config for the installed Ray."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())


def test_validates_against_the_schema_in_the_ray_wheel(ray_schema: dict, cluster: dict) -> None:
    jsonschema.validate(cluster, ray_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**cluster, "max_workers": "many"}, ray_schema)


def test_ray_accepts_it_after_filling_provider_defaults(cluster: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    full = prepare_config(cluster)
    validate_config(full)
    assert full["provider"]["type"] == "aws"
    assert full["available_node_types"]["worker"]["max_workers"] == 16


def test_nodes_install_this_project_and_ray_matches(cluster: dict) -> None:
    assert cluster["file_mounts"]["~/cdp-ray"] == "."
    assert any("-e ~/cdp-ray" in c for c in cluster["setup_commands"])
    assert cluster["head_node_type"] in cluster["available_node_types"]
    assert all("~/venv/bin/ray start" in " ".join(cluster[k]) for k in ("head_start_ray_commands", "worker_start_ray_commands"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    import ray

    assert f"=={ray.__version__}" in pyproject, "the cluster installs the Ray pinned in pyproject.toml"
