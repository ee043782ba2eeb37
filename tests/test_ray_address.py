"""The Ray a run joins is found as ``ray.init()`` finds it (issue 14, item 6): ``--address``,
``$RAY_ADDRESS``, the cluster ``ray start`` recorded on this machine, else a new local Ray. A Ray that
merely runs here (a notebook's, these tests' own) is not joined. No test here connects anywhere."""

from __future__ import annotations

import pytest

from cdp_ray.cli import ray_env
from cdp_ray.cli.ray_env import resolve_address
from cdp_ray.errors import CdpRayError


@pytest.fixture
def ray_tmp(tmp_path, monkeypatch):
    """Ray's temp directory moved to ``tmp_path`` (``$RAY_TMPDIR``): no address file, no RAY_ADDRESS."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray").mkdir()
    return tmp_path / "ray"


def test_nothing_given_starts_a_new_local_ray(ray_tmp):
    target, origin = resolve_address(None)
    assert target is None and "no cluster started by `ray start`" in origin


def test_the_cluster_ray_start_started_here(ray_tmp):
    (ray_tmp / "ray_current_cluster").write_text("10.1.2.3:6379\n")
    assert resolve_address(None) == ("10.1.2.3:6379", f"the cluster `ray start` started on this machine "
                                                      f"({ray_tmp / 'ray_current_cluster'})")


def test_ray_address_wins_over_the_started_cluster(ray_tmp, monkeypatch):
    (ray_tmp / "ray_current_cluster").write_text("10.1.2.3:6379")
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert resolve_address(None) == ("http://head:8265", "$RAY_ADDRESS")
    monkeypatch.setenv("RAY_ADDRESS", "")  # empty counts as unset, as for ray.init()
    assert resolve_address(None)[0] == "10.1.2.3:6379"


def test_address_option_wins_over_everything(ray_tmp, monkeypatch):
    (ray_tmp / "ray_current_cluster").write_text("10.1.2.3:6379")
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert resolve_address("ray://other:10001") == ("ray://other:10001", "--address")
    assert resolve_address("auto") == ("auto", "--address")  # any Ray on the machine, only when asked
    assert resolve_address("local") == (None, "--address local")


def test_connect_starts_local_or_joins_what_was_resolved(ray_tmp, monkeypatch):
    """``connect`` hands ray.init exactly the resolved address (``local`` for a new Ray, never ``auto``)."""
    import ray

    calls = []

    def fake_init(address=None, **kw):
        calls.append(address)
        if address == "10.9.9.9:6379":
            raise ConnectionError("could not reach the GCS")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    assert ray_env.connect(None) == "local Ray (3 CPUs)"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert ray_env.connect(None) == "Ray cluster at http://head:8265 (3 CPUs, from $RAY_ADDRESS)"
    monkeypatch.delenv("RAY_ADDRESS")
    (ray_tmp / "ray_current_cluster").write_text("10.9.9.9:6379")
    with pytest.raises(CdpRayError) as err:
        ray_env.connect(None)
    assert "10.9.9.9:6379" in err.value.message and "`ray start` started on this machine" in err.value.message
    assert "--address local" in err.value.hint
    assert calls == ["local", "http://head:8265", "10.9.9.9:6379"]
