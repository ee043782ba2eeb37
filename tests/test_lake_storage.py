"""The same lake on local disk, S3 (moto) and GCS (emulator) reads into identical tables, locally and on Ray."""

from __future__ import annotations

import errno
import json

import pyarrow as pa
import pytest
import s3fs

import cdp_ray
import cdp_ray.lake.store as store
from cdp_ray.errors import LakeError, LedgerNotFoundError
from cdp_ray.lake import LakeSchema
from cdp_ray.lake.writer import write_lake
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.processors.base import REGISTRY
from conftest import PUBNET

FIRST, LAST = 63092982, 63092989
SCHEMA = LakeSchema(ledgers_per_file=2, files_per_partition=2)
KEYS = [SCHEMA.key_for(s) for s in range(FIRST, LAST + 1, 2)]
PROCESSORS = [p for p in ("ledgers", "transactions", "operations") if p in REGISTRY]


@pytest.fixture(scope="module")
def lakes(tmp_path_factory, wallet_ledgers, s3_server, gcs_server) -> dict[str, LakeSource]:
    """One lake written three times; a source for each store, reading ledgers 63092983-63092988."""
    raws = [wallet_ledgers[s] for s in range(FIRST, LAST + 1)]
    local = tmp_path_factory.mktemp("lake")
    s3_bucket, gcs_bucket = s3_server.bucket(public=True), gcs_server.bucket()
    for uri, opts in ((str(local), None), (f"s3://{s3_bucket}/pubnet", s3_server.options), (f"gs://{gcs_bucket}/pubnet", gcs_server.options)):
        assert write_lake(raws, uri, SCHEMA, network_passphrase=PUBNET, storage_options=opts) == KEYS
    rng = {"start": FIRST + 1, "end": LAST - 1}
    return {
        "local": LakeSource(uri=str(local), **rng),
        "s3": LakeSource(uri=f"s3://{s3_bucket}/pubnet", endpoint_url=s3_server.endpoint_url, storage_options={"key": "testing", "secret": "testing"}, **rng),
        "s3-anonymous": LakeSource(uri=f"s3://{s3_bucket}/pubnet", endpoint_url=s3_server.endpoint_url, anonymous=True, **rng),
        "gcs": LakeSource(uri=f"gs://{gcs_bucket}/pubnet", endpoint_url=gcs_server.endpoint_url, anonymous=True, **rng),
    }


@pytest.fixture(scope="module")
def local_tables(lakes) -> dict[str, pa.Table]:
    tables = cdp_ray.load(PROCESSORS, lakes["local"], engine="local")
    assert tables["ledgers"].column("sequence").to_pylist() == list(range(FIRST + 1, LAST))
    return tables


@pytest.mark.parametrize("store_name", ["s3", "s3-anonymous", "gcs"])
def test_object_stores_give_identical_tables(lakes, local_tables, store_name: str) -> None:
    lake = lakes[store_name].open()
    assert (lake.layout, lake.schema.ledgers_per_file, lake.schema.files_per_partition) == ("lake", 2, 2)
    tables = cdp_ray.load(PROCESSORS, lakes[store_name], engine="local")
    for name in PROCESSORS:
        assert tables[name].num_rows > 0
        assert tables[name].equals(local_tables[name]), name


def test_s3_reads_issue_one_get_per_object_and_no_listing(lakes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    orig = s3fs.S3FileSystem._call_s3

    async def counted(fs, method, *args, **kwargs):
        calls.append((method, kwargs.get("Key", kwargs.get("Prefix", ""))))
        return await orig(fs, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    src = lakes["s3"]
    got = [r.sequence for r in src.open().read_range(src.start, src.end)]
    assert got == list(range(FIRST + 1, LAST))
    assert not [c for c in calls if c[0].startswith("list")]
    # .config.json, a 1-byte probe of the first object, then one GET per object.
    assert calls == [("get_object", "pubnet/.config.json"), ("get_object", f"pubnet/{KEYS[0]}")] + [
        ("get_object", f"pubnet/{k}") for k in KEYS
    ]


def test_access_denied_is_reported_with_what_to_do(s3_server) -> None:
    bucket = s3_server.bucket()
    deny = {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/*"}
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    with pytest.raises(LakeError) as err:
        LakeSource(uri=f"s3://{bucket}/x", start=5, end=5, anonymous=True, endpoint_url=s3_server.endpoint_url, layout="lake").open()
    assert "access denied" in str(err.value) and "anonymous" in err.value.hint


def test_missing_s3_object_names_the_exact_uri(lakes) -> None:
    src = lakes["s3"].model_copy(update={"end": LAST + 2})
    with pytest.raises(LedgerNotFoundError) as err:
        list(src.open().read_range(src.start, src.end))
    assert err.value.key == f"{src.uri}/{SCHEMA.key_for(LAST + 1)}" and err.value.sequence == LAST + 1


def test_nonexistent_bucket(s3_server) -> None:
    with pytest.raises(LakeError) as err:
        LakeSource(uri="s3://no-such-bucket/lake", start=5, end=5, endpoint_url=s3_server.endpoint_url, storage_options={"key": "k", "secret": "s"}).open()
    assert "'s3://no-such-bucket/lake' does not exist" in str(err.value)


class _Flaky:
    """Wraps a filesystem: the first ``failures`` reads of lake objects raise ``error``."""

    def __init__(self, fs, failures: int, error: Exception):
        self.fs, self.left, self.error, self.reads = fs, failures, error, 0

    def cat_file(self, path, *args, **kwargs):
        self.reads += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        return self.fs.cat_file(path, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.fs, name)


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EIO, "503 Service Unavailable"), TimeoutError("read timed out"), ConnectionResetError("reset")],
    ids=["5xx", "timeout", "reset"],
)
def test_transient_errors_are_retried_with_exponential_backoff(lakes, monkeypatch: pytest.MonkeyPatch, error) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)
    src = lakes["s3"]
    lake = src.open()
    flaky = _Flaky(lake.fs, failures=3, error=error)
    lake._fs = flaky
    assert [r.sequence for r in lake.read_range(src.start, src.end)] == list(range(FIRST + 1, LAST))
    assert sleeps == [0.5, 1.0, 2.0] and flaky.reads == len(KEYS) + 3


def test_retries_give_up_with_a_lake_error(lakes, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)
    src = lakes["s3"].model_copy(update={"retries": 2})
    lake = src.open()
    lake._fs = _Flaky(lake.fs, failures=10, error=OSError(errno.EIO, "503 Slow Down"))
    with pytest.raises(LakeError) as err:
        list(lake.read_range(src.start, src.end))
    assert f"read {src.uri}/{KEYS[0]} failed after 3 attempts" in str(err.value) and "503 Slow Down" in str(err.value)
    assert sleeps == [0.5, 1.0]


def test_transient_error_classification() -> None:
    assert store.is_transient(OSError(errno.EIO, "500")) and store.is_transient(TimeoutError())
    assert not store.is_transient(OSError(errno.EINVAL, "InvalidBucketName"))
    assert not store.is_transient(FileNotFoundError("k")) and not store.is_transient(PermissionError("k"))
    assert not store.is_transient(ValueError("bad"))


def test_permanent_errors_are_not_retried(lakes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.time, "sleep", lambda s: pytest.fail("slept before a permanent error"))
    src = lakes["s3"]
    lake = src.open()
    lake._fs = flaky = _Flaky(lake.fs, failures=1, error=PermissionError("Forbidden"))
    with pytest.raises(LakeError, match="access denied"):
        list(lake.read_range(src.start, src.end))
    assert flaky.reads == 1


def test_ray_engine_reads_object_storage(ray_cluster, lakes, local_tables) -> None:
    tables = cdp_ray.load(PROCESSORS, lakes["s3"], engine="ray")
    for name in PROCESSORS:
        assert tables[name].equals(local_tables[name]), name
    ds = cdp_ray.read_ledgers(lakes["gcs"], ledgers_per_task=2)
    rows = ds.take_all()
    assert [r["sequence"] for r in sorted(rows, key=lambda r: r["sequence"])] == list(range(FIRST + 1, LAST))
