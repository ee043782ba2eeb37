"""The notebooks run top to bottom on the bundled sample (offline) and draw their charts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _execute(name: str, cwd: Path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _outputs(nb, output_type: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == output_type]


def _pngs(nb) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in _outputs(nb, "display_data") if "image/png" in o.get("data", {})]


def _stdout(nb) -> str:
    return "".join(o.text for o in _outputs(nb, "stream") if o.name == "stdout")


def test_explore_ledgers(tmp_path: Path) -> None:
    nb = _execute("01_explore_ledgers.ipynb", tmp_path)
    assert not _outputs(nb, "error")
    assert "10 ledgers, 2650 transactions" in _stdout(nb)
    assert "Iceberg: 2650 transactions in 10 ledgers" in _stdout(nb)
    assert (tmp_path / "out" / "iceberg" / "catalog.db").is_file()
    (png,) = _pngs(nb)
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert (tmp_path / "out" / "ledger_activity.png").read_bytes().startswith(PNG_MAGIC)


def test_contract_events(tmp_path: Path) -> None:
    from cdp_ray.processors import REGISTRY

    if "contract_events" not in REGISTRY:
        pytest.skip("the contract_events processor is not registered yet")
    nb = _execute("02_contract_events.ipynb", tmp_path)
    assert not _outputs(nb, "error")
    out = _stdout(nb)
    assert "12750 events, 3686 published by contracts in successful calls" in out
    assert "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA native" in out  # XLM SAC: called by most txs
    (png,) = _pngs(nb)
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert (tmp_path / "out" / "contract_events.png").exists()


def test_time_range_filter_and_committed_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_RAY_OFFLINE", "1")  # CI reaches no network; the public-lake cell must skip cleanly
    nb = _execute("03_time_range_and_output.ipynb", tmp_path)
    assert not _outputs(nb, "error")
    out = _stdout(nb)
    assert "2026-06-19T00:21:00Z .. 2026-06-19T00:21:30Z -> ledgers 63092984-63092988" in out
    assert "public lake: skipped (offline)" in out
    assert "XLM paid: 73970.6708089 in 13 payments (exact, Decimal(precision=38, scale=7))" in out
    assert "committed 3 chunks" in out
    (png,) = _pngs(nb)
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert (tmp_path / "out" / "payments_by_time.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in (tmp_path / "out" / "payments-by-time" / "operations").glob("*.parquet")) == [
        "0063092984-0063092985.parquet", "0063092986-0063092987.parquet", "0063092988-0063092988.parquet"]
