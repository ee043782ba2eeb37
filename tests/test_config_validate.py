"""Pipeline validation: problems located at their YAML line, suggestions, flow checks, JSON Schema, UTC ranges."""

from __future__ import annotations

import bisect
import math
import random
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import (
    PipelineConfig,
    PipelineValidationError,
    load_pipeline,
    parse_pipeline,
    pipeline_json_schema,
    validate_text,
    with_range,
)
from cdp_ray.pipeline.timerange import LedgerClock, _search, parse_utc, resolve_time_range
from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_PIPELINE, SAMPLE_RANGE

# Close times of the ten sample ledgers 63092982..63092991 (header scpValue.closeTime, UTC).
SAMPLE_CLOSE = [1781828452, 1781828458, 1781828463, 1781828469, 1781828475,
                1781828480, 1781828486, 1781828491, 1781828497, 1781828503]

BAD = """\
name: bad
source:
  uri: {lake}
  start: 0
  end: 63092991
  netwrk: pubnet
processors:
  - ledgers
  - paymnets
  - name: payments
    config:
      include_failed: maybe
sinks:
  - {{type: parquet, uri: out/x, compresion: zstd}}
  - kafka: foo
options:
  ledgers_per_task: 0
"""


def _by_path(v):
    return {p.path: p for p in v.problems}


def test_every_problem_has_its_line_and_column() -> None:
    v = validate_text(BAD.format(lake=SAMPLE_LAKE), "bad.yaml")
    got = {p.path: (p.line, p.column) for p in v.problems}
    assert got == {
        "source.start": (4, 10),
        "source.netwrk": (6, 3),
        "processors[1]": (9, 5),
        "processors[2].config.include_failed": (12, 23),
        "sinks[0].compresion": (14, 33),
        "sinks[1].type": (15, 5),
        "options.ledgers_per_task": (17, 21),
    }
    assert v.config is None and len(v.errors) == 7
    p = _by_path(v)
    assert "did you mean 'payments'" in p["processors[1]"].hint
    assert p["source.netwrk"].hint.startswith("did you mean 'network'?")
    assert p["sinks[0].compresion"].hint.startswith("did you mean 'compression'?")
    assert "known sinks: iceberg, parquet, postgres" in p["sinks[1].type"].hint
    assert p["processors[1]"].format("bad.yaml").startswith("bad.yaml:9:5: error: processors[1]: unknown processor 'paymnets'")


def test_load_raises_one_error_listing_every_problem(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD.format(lake=SAMPLE_LAKE))
    with pytest.raises(PipelineValidationError) as err:
        load_pipeline(f)
    assert f"{f}:9:5: error: processors[1]" in err.value.message
    assert f"{f}:17:21:" in err.value.message
    assert err.value.message.startswith(f"{f} has 7 problems:\n")
    assert "cdp-ray validate" in err.value.hint


def test_yaml_syntax_error_points_at_the_line() -> None:
    v = validate_text("name: x\nsource:\n  uri: a\n   start: 1\n", "p.yaml")
    (p,) = v.problems
    assert p.line == 4 and p.message.startswith("not valid YAML")


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDP_TEST_UNSET", raising=False)
    monkeypatch.setenv("CDP_TEST_LAKE", str(SAMPLE_LAKE))
    text = (
        "# ${CDP_TEST_UNSET} in a comment is left alone\n"
        "source: {uri: '${CDP_TEST_LAKE}', start: 63092982, end: 63092983}\n"
        "processors: [ledgers]\n"
        "sinks: ['parquet://${CDP_TEST_OUT:-out/default}']\n"
    )
    cfg = validate_text(text).config_or_raise()
    assert cfg.source.uri == str(SAMPLE_LAKE) and cfg.sinks[0].uri == "out/default"
    v = validate_text(text + "name: ${CDP_TEST_UNSET}\n", "p.yaml")
    (p,) = v.problems
    assert (p.line, p.message) == (5, "environment variable CDP_TEST_UNSET is not set")
    assert "export CDP_TEST_UNSET=" in p.hint


def _doc(**over) -> str:
    doc = {"name": "t", "source": {"uri": str(SAMPLE_LAKE), "start": SAMPLE_RANGE[0], "end": SAMPLE_RANGE[1]},
           "processors": ["ledgers", "transactions"], "sinks": ["parquet://out/t"]}
    doc.update(over)
    return yaml.safe_dump(doc, sort_keys=False)


def test_flow_checks() -> None:
    dup = validate_text(_doc(processors=["ledgers", "transactions", "ledgers"]))
    assert [p.path for p in dup.errors] == ["processors[2]"] and "listed twice" in dup.errors[0].message
    inside = validate_text(_doc(sinks=[{"parquet": f"{SAMPLE_LAKE}/out"}]))
    assert [p.path for p in inside.errors] == ["sinks[0]"] and "inside the source lake" in inside.errors[0].message
    date = validate_text(_doc(processors=["ledgers", "trades"], sinks=[{"type": "parquet", "uri": "o", "partitioning": "date"}]))
    assert [e.message for e in date.errors] == ["table 'trades' has no timestamp column 'closed_at' to partition by date"]
    net = validate_text(_doc(source={"uri": str(SAMPLE_LAKE), "start": 2, "end": 3, "network": "mainnet"}))
    assert net.errors[0].path == "source.network" and "did you mean 'pubnet'" in net.errors[0].hint
    literal = validate_text(_doc(source={"uri": str(SAMPLE_LAKE), "start": 2, "end": 3, "network": "Test SDF Network ; September 2015"}))
    assert literal.config is not None and literal.config.source.network_passphrase.startswith("Test SDF")
    nosink = validate_text(_doc(sinks=[]))
    assert nosink.config is not None and [w.severity for w in nosink.problems] == ["warning"]


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "x..y", ".hidden", "", "a" * 129, "tab\tname"])
def test_pipeline_names_that_could_leave_a_directory_are_refused(name: str) -> None:
    """The name becomes manifest directories (`_cdp_ray/{name}/ranges/`): nothing that could climb out."""
    doc = {"name": name, "source": {"uri": str(SAMPLE_LAKE), "start": 2, "end": 3}, "processors": ["ledgers"]}
    v = validate_text(yaml.safe_dump(doc), "p.yaml", resolve_times=False)
    (problem,) = v.errors
    assert problem.path == "name" and problem.line == 1
    assert "letters, digits, `_`, `.` and `-`" in problem.message and "without `..`" in problem.message
    with pytest.raises(ValueError, match="is not allowed"):
        PipelineConfig.model_validate(doc)


def test_ordinary_pipeline_names_pass() -> None:
    for name in ("core-tables", "sample.v2", "a", "A_1-b.c", "x" * 128):
        doc = {"name": name, "source": {"uri": str(SAMPLE_LAKE), "start": 2, "end": 3}, "processors": ["ledgers"]}
        assert PipelineConfig.model_validate(doc).name == name


def test_one_liner_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError) as err:
        parse_pipeline(f"lake://{SAMPLE_LAKE}?start=63092982&end=63092983 | transactons | parquet://out")
    assert "unknown processor 'transactons'" in err.value.message and "did you mean 'transactions'" in err.value.message
    with pytest.raises(PipelineValidationError) as err:
        parse_pipeline(f"lake://{SAMPLE_LAKE}?start=63092985&end=63092983 | ledgers")
    assert err.value.message == ("one-line pipeline has 1 problem:\n"
                                 "  one-line pipeline: error: source: end (63092983) is before start (63092985)")


def test_json_schema_accepts_what_the_loader_accepts() -> None:
    schema = pipeline_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    sample = yaml.safe_load(SAMPLE_PIPELINE.read_text())
    validator.validate(sample)
    from cdp_ray.cli.templates import TEMPLATES, TemplateParams, render

    for name in TEMPLATES:
        validator.validate(yaml.safe_load(render(name, TemplateParams())))
    timed = {**sample, "source": {"uri": "s3://b/p", "start_time": "2025-06-01T00:00:00Z", "end": 5}}
    validator.validate(timed)
    for bad in ({**sample, "processors": ["nope"]},
                {**sample, "source": {"uri": "x", "end": 5}},
                {**sample, "sinks": [{"type": "parquet", "uri": "o", "compresion": "zstd"}]},
                {**sample, "extra": 1}):
        assert not validator.is_valid(bad), bad


# ---- UTC times -> ledgers ----------------------------------------------------------------------


def test_close_times_of_the_sample_lake() -> None:
    from cdp_ray.lake import LedgerLake

    clock = LedgerClock(LedgerLake(str(SAMPLE_LAKE)))
    assert clock.bounds() == SAMPLE_RANGE
    assert [clock.close_time(s) for s in range(SAMPLE_RANGE[0], SAMPLE_RANGE[1] + 1)] == SAMPLE_CLOSE


@pytest.mark.parametrize(
    ("start_time", "end_time", "expected"),
    [
        ("2026-06-19T00:21:00Z", "2026-06-19T00:21:30Z", (63092984, 63092988)),  # between closes
        ("2026-06-19T00:21:03Z", "2026-06-19T00:21:31Z", (63092984, 63092989)),  # exactly on closes: inclusive
        ("2026-06-19T00:21:03.5+00:00", "2026-06-19T02:21:31+02:00", (63092985, 63092989)),  # offsets
        ("2026-06-19", None, SAMPLE_RANGE),  # before the lake: from its first ledger
        (None, "2026-06-19T00:20:52", (63092982, 63092982)),
    ],
)
def test_resolve_time_range_on_the_sample_lake(start_time, end_time, expected) -> None:
    from cdp_ray.lake import LedgerLake

    got = resolve_time_range(LedgerLake(str(SAMPLE_LAKE)), start_time, end_time)
    assert (got.start, got.end) == expected
    assert got.reads <= 2 + 2 * math.ceil(math.log2(10))


def test_times_outside_the_lake_say_what_it_holds() -> None:
    from cdp_ray.lake import LedgerLake

    with pytest.raises(ConfigError) as err:
        resolve_time_range(LedgerLake(str(SAMPLE_LAKE)), "2027-01-01T00:00:00Z", None)
    assert "after the lake's last ledger" in err.value.message
    assert "63092982-63092991, closed 2026-06-19T00:20:52Z to 2026-06-19T00:21:43Z" in err.value.hint
    with pytest.raises(ConfigError, match="no ledger closed between"):
        resolve_time_range(LedgerLake(str(SAMPLE_LAKE)), "2026-06-19T00:21:04Z", "2026-06-19T00:21:08Z")
    with pytest.raises(ConfigError, match="cannot read 'yesterday' as a UTC time"):
        parse_utc("yesterday")


def test_files_layout_lake_is_bounded_by_its_index(tmp_path: Path) -> None:
    from cdp_ray.lake import LedgerLake

    part = next(SAMPLE_LAKE.iterdir())
    for f in sorted(part.iterdir())[2:6]:  # keys sort newest first: ledgers 63092989..63092986
        shutil.copy(f, tmp_path / f.name)
    got = resolve_time_range(LedgerLake(str(tmp_path), layout="files"), "2026-06-19T00:21:00Z", "2026-06-19T00:21:30Z")
    assert (got.start, got.end) == (63092986, 63092988)  # 00:21:00 precedes the first file: starts at it


class _SyntheticClock(LedgerClock):
    def __init__(self, first: int, times: list[int]):
        super().__init__(lake=None)  # type: ignore[arg-type]
        self.first, self.times = first, times

    def close_time(self, seq: int) -> int:
        self.reads += 1
        return self.times[seq - self.first]


def test_search_matches_bisect_within_log_reads() -> None:
    """Irregular close intervals (1-60 s, with a long stall) over a million ledgers."""
    rng = random.Random(7)
    times, t = [], 1_600_000_000
    for i in range(1_000_000):
        t += 3600 if i == 400_000 else rng.choice((5, 5, 6, 6, 6, 7, 1, 60))
        times.append(t)
    first, bound = 2, 2 + 2 * math.ceil(math.log2(len(times)))
    for target in [times[0] - 1, times[0], times[123_456] + 1, times[400_000] - 100, times[-1], times[-1] - 3] + \
            [rng.randrange(times[0], times[-1]) for _ in range(30)]:
        clock = _SyntheticClock(first, times)
        start = _search(clock, target, first, first + len(times) - 1, first_at_or_after=True)
        assert start - first == bisect.bisect_left(times, target)
        assert clock.reads <= bound
        if target < times[0]:
            continue  # resolve_time_range reports an end before the lake as an error
        clock = _SyntheticClock(first, times)
        end = _search(clock, target, first, first + len(times) - 1, first_at_or_after=False)
        assert end - first == bisect.bisect_right(times, target) - 1
        assert clock.reads <= bound


def test_pipeline_with_start_time(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"source:\n  uri: {SAMPLE_LAKE}\n  start_time: 2026-06-19T00:21:00Z\n  end: 63092990\n"
                 "processors: [ledgers]\nsinks: ['parquet://out']\n")
    cfg = load_pipeline(f)
    assert (cfg.source.start, cfg.source.end) == (63092984, 63092990)
    f.write_text(f"source:\n  uri: {SAMPLE_LAKE}\n  start: 63092982\n  start_time: 2026-06-19T00:21:00Z\n  end: 63092990\n"
                 "processors: [ledgers]\n")
    v = validate_text(f.read_text(), "p.yaml")
    assert [(p.path, p.line) for p in v.errors] == [("source.start_time", 4)]
    assert "both start and start_time" in v.errors[0].message
    one = parse_pipeline(f"lake://{SAMPLE_LAKE}?start_time=2026-06-19T00:21:10Z&end_time=2026-06-19T00:21:40Z | ledgers")
    assert (one.source.start, one.source.end) == (63092986, 63092990)
    moved = with_range(one, start_time="2026-06-19T00:20:00Z")
    assert (moved.source.start, moved.source.end) == (63092982, 63092990)
    with pytest.raises(ConfigError, match="end .* is before start"):
        with_range(one, start=63092991, end=63092985)


def test_times_left_unresolved_still_check_the_rest() -> None:
    text = (f"source:\n  uri: {SAMPLE_LAKE}\n  start: 63092982\n  end_time: 2030-01-01T00:00:00Z\n"
            "processors: [ledgers, paymnts]\nsinks: ['parquet://out']\n")
    v = validate_text(text, "p.yaml", resolve_times=False)
    assert [(p.path, p.line) for p in v.errors] == [("processors[1]", 5)]
    resolved = validate_text(text.replace("paymnts", "payments"), "p.yaml")
    assert (resolved.config.source.start, resolved.config.source.end) == SAMPLE_RANGE
    assert resolved.time_resolution_reads >= 2
