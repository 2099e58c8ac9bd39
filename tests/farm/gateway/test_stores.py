"""The gateway opens and checks its stores before anything else, and cleans up after a crash.

- A ``tasks.db`` that is not usable SQLite (overwritten, zeroed, truncated) stops ``farm serve`` at
  once, naming the file and SQLite's own reason, before Ray is started (it used to hang ~68 s and
  say only "Failed to connect to GCS").
- A missing or empty ``tasks.db`` next to stored results is refused unless ``--fresh-store``, which
  moves the old file aside and begins an empty store.
- Half-written assets are removed at start; results stored before owners were recorded get the
  key of their task.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.gateway.server import Gateway, GatewayConfig
from farm.io.artifacts import LocalArtifactStore
from farm.scheduler.store import StoreError, TaskStore


def _config(data: Path) -> GatewayConfig:
    return GatewayConfig(grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(data))


def _with_results(data: Path, *, tasks: bool = True, results: int = 1) -> None:
    """A data dir as a gateway leaves it: a task store (unless ``tasks`` is False) and results."""
    if tasks:
        store = TaskStore(data / "tasks.db")
        for i in range(100):
            store.insert_task(f"t{i}", "k", '{"x": "' + "y" * 3000 + '"}', base_seed=1, seeds=[1])
        store.close()
    artifacts = LocalArtifactStore(data / "artifacts")
    for n in range(results):
        source = data / "render.mp4"
        source.write_bytes(b"a video")
        artifacts.put(f"v{n + 1}", source, "video/mp4", None, owner_key="k")
    artifacts.close()
    # Everything in the database file itself (a truncation then cuts rows, not only the WAL).
    with sqlite3.connect(data / "artifacts" / LocalArtifactStore.DB_NAME) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    damaged = {
        "overwritten": os.urandom(4096) + data[4096:],
        "zeroed": bytes(len(data)),
        "truncated": data[: len(data) // 2 + 100],
    }[how]
    path.write_bytes(damaged)


@pytest.mark.parametrize("how", ["overwritten", "zeroed", "truncated"])
def test_a_damaged_task_store_is_refused_before_ray_starts(tmp_path, how, monkeypatch):
    import farm.workers.cluster

    data = tmp_path / "data"
    data.mkdir()
    _with_results(data)
    _damage(data / "tasks.db", how)

    def no_ray(*_args, **_kwargs):
        raise AssertionError("Ray was started before the stores were checked")

    monkeypatch.setattr(farm.workers.cluster, "connect_ray", no_ray)
    with pytest.raises(StoreError) as refused:
        Gateway(_config(data))._build_farm()
    message = str(refused.value)
    assert str(data / "tasks.db") in message and "--fresh-store" in message
    assert "malformed" in message or "not a database" in message


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_missing_or_empty_task_store_next_to_results_needs_fresh_store(tmp_path, state):
    data = tmp_path / "data"
    data.mkdir()
    _with_results(data, tasks=state == "empty")
    if state == "empty":
        (data / "tasks.db").write_bytes(b"")
    (data / "tasks.db-wal").write_bytes(b"a WAL of the lost database")
    with pytest.raises(StoreError, match=f"{state}.*holds 1 result.*--fresh-store"):
        Gateway(_config(data))._open_stores(data)

    store = Gateway(_config(data), fresh_store=True)._open_stores(data)
    assert store.unfinished_tasks() == []
    assert (data / "tasks.db").stat().st_size > 0
    aside = sorted(p.name for p in data.iterdir() if ".corrupt-" in p.name)
    assert sorted(name.partition(".corrupt-")[0] for name in aside) == (
        ["tasks.db", "tasks.db-wal"] if state == "empty" else ["tasks.db-wal"]
    ), "the old files are kept, out of the way (a stale WAL would be replayed into the new store)"
    store.close()
    # Started fresh once, the store is there: the next plain start is a normal one.
    Gateway(_config(data))._open_stores(data).close()


def test_fresh_store_moves_a_damaged_store_aside_and_begins_empty(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _with_results(data)
    _damage(data / "tasks.db", "zeroed")
    store = Gateway(_config(data), fresh_store=True)._open_stores(data)
    assert store.get_task("t1") is None
    (aside,) = [p for p in data.iterdir() if p.name.startswith("tasks.db.corrupt-")]
    assert aside.read_bytes() == bytes(aside.stat().st_size)
    store.close()


def test_a_first_start_needs_no_flag(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Gateway(_config(data))._open_stores(data).close()
    assert (data / "tasks.db").is_file()


@pytest.mark.parametrize("how", ["zeroed", "truncated"])
def test_a_damaged_artifact_index_is_refused_naming_it(tmp_path, how):
    data = tmp_path / "data"
    data.mkdir()
    _with_results(data, results=300)
    _damage(data / "artifacts" / LocalArtifactStore.DB_NAME, how)
    for fresh in (False, True):
        with pytest.raises(StoreError, match="artifacts.sqlite3"):
            Gateway(_config(data), fresh_store=fresh)._open_stores(data)


def test_start_removes_half_written_assets_and_records_owners_of_earlier_results(tmp_path):
    data = tmp_path / "data"
    assets = data / "assets"
    assets.mkdir(parents=True)
    kept = [assets / "0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10", assets / "0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10.json"]
    leftovers = [assets / "5e2d1f0a-6b1c-4c39-9d2b-3c3b3f6d7a10.part", assets / ".abc.json.partial-0a1b2c3d4e5f"]
    for path in kept + leftovers:
        path.write_bytes(b"x")
    store = TaskStore(data / "tasks.db")
    store.insert_task("t1", "alice", "{}", base_seed=1, seeds=[1])
    from farm.domain.records import ResultRecord

    store.upsert_result(ResultRecord(task_uuid="t1", index=0, status="success", video_uuid="v-old"))
    store.close()
    artifacts = LocalArtifactStore(data / "artifacts")
    for name in ("v-old", "v-orphan"):
        source = data / f"{name}.mp4"
        source.write_bytes(b"video")
        artifacts.put(name, source, "video/mp4", None)
    artifacts.close()
    with sqlite3.connect(data / "artifacts" / LocalArtifactStore.DB_NAME) as db:  # as an older gateway stored them
        db.execute("UPDATE artifacts SET owner = NULL")

    gateway = Gateway(_config(data))
    gateway._open_stores(data).close()
    assert all(p.exists() for p in kept) and not any(p.exists() for p in leftovers)
    assert gateway.artifacts.get("v-old").visible_to("alice")
    assert not gateway.artifacts.get("v-old").visible_to("bob")
    assert gateway.artifacts.unowned() == ["v-orphan"], "no task left to say whose it is"


def test_farm_serve_on_a_damaged_store_exits_at_once_with_the_cause(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _with_results(data)
    _damage(data / "tasks.db", "truncated")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "farm.cli", "serve", "--data-dir", str(data), "--grpc-port", "0", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    assert f"error: the task store {data / 'tasks.db'} is not a usable SQLite database" in done.stderr
    assert "GCS" not in done.stderr


def test_housekeeping_prunes_task_records_and_assets_past_their_retention_now_and_then(tmp_path):
    """The gateway's sweep: at start, then every ``expire_interval_s``, ``prune(task_retention_s)``
    and ``expire_assets(asset_retention_s)``."""
    import asyncio

    pruned: list[float] = []
    expired: list[float] = []

    class Manager:
        def prune(self, retention_s: float) -> int:
            pruned.append(retention_s)
            return 1

        def expire_assets(self, retention_s: float) -> int:
            expired.append(retention_s)
            return 1

    config = GatewayConfig(
        grpc_port=0,
        http_port=0,
        host="127.0.0.1",
        data_dir=str(tmp_path),
        expire_interval_s=0.05,
        task_retention_s=3600,
        asset_retention_s=7200,
    )
    gateway = Gateway(config)
    gateway.manager = Manager()  # type: ignore[assignment]  # a stand-in

    async def run() -> None:
        sweep = asyncio.create_task(gateway._housekeeping())
        await asyncio.sleep(0.3)
        sweep.cancel()

    asyncio.run(run())
    assert len(pruned) >= 3 and set(pruned) == {3600}
    assert len(expired) >= 3 and set(expired) == {7200}
