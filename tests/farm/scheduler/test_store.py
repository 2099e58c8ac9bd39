"""The task store keeps tasks and results across reopenings of the same SQLite file."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from farm.domain.records import ResultRecord
from farm.scheduler.store import TaskStore


def test_a_task_survives_reopening_the_file_with_its_results(tmp_path):
    db = tmp_path / "tasks.db"
    store = TaskStore(db)
    store.insert_task("t1", "key-a", '{"a": 1}', base_seed=7, seeds=[7, 8])
    done = ResultRecord(task_uuid="t1", index=1, status="success", seed=8, video_uuid="v", progress=1.0)
    store.upsert_result(done, path=tmp_path / "t1-1.mp4")
    store.update_task_status("t1", "running")
    store.close()

    reopened = TaskStore(db)
    record = reopened.get_task("t1")
    assert record.api_key == "key-a" and record.body == '{"a": 1}' and record.status == "running"
    assert [r.status for r in record.results] == ["queued", "success"]
    assert record.results[1] == done
    assert reopened.get_base_seed("t1") == 7
    assert reopened.result_path("t1", 1) == tmp_path / "t1-1.mp4"
    assert reopened.get_task("missing") is None
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_upsert_keeps_the_path_unless_given_and_progress_updates_alone(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    store.insert_task("t1", None, "{}", base_seed=1, seeds=[1])
    first = ResultRecord(task_uuid="t1", index=0, status="success", seed=1)
    store.upsert_result(first, path="/x/file.mp4")
    store.upsert_result(dataclasses.replace(first, webhook_status="delivered"))
    assert store.result_path("t1", 0).as_posix() == "/x/file.mp4"
    assert store.get_task("t1").results[0].webhook_status == "delivered"
    store.set_progress("t1", 0, 0.5)
    assert store.get_task("t1").results[0].progress == 0.5


def test_unfinished_tasks_are_queued_or_running_oldest_first(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    store.insert_task("new", None, "{}", base_seed=1, seeds=[1], created_at=30)
    store.insert_task("old", None, "{}", base_seed=1, seeds=[1], created_at=10)
    store.insert_task("mid", None, "{}", base_seed=1, seeds=[1], created_at=20)
    store.insert_task("gone", None, "{}", base_seed=1, seeds=[1], created_at=5)
    store.update_task_status("gone", "success")
    store.update_task_status("mid", "running")
    assert [t.task_uuid for t in store.unfinished_tasks()] == ["old", "mid", "new"]
    assert store.count_queued() == 2


def test_writes_from_many_threads_all_land(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")

    def insert(n: int) -> None:
        for i in range(20):
            store.insert_task(f"t{n}-{i}", f"k{n}", "{}", base_seed=i, seeds=[i])

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_queued() == 160


def test_an_older_database_gains_the_new_result_columns_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "tasks.db"
    old = sqlite3.connect(path)
    # The schema as the first release wrote it: no error_parameter, no extended_prompt.
    old.executescript("""
        CREATE TABLE tasks (task_uuid TEXT PRIMARY KEY, api_key TEXT, body TEXT NOT NULL, status TEXT NOT NULL,
                            base_seed INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL, error TEXT);
        CREATE TABLE results (task_uuid TEXT NOT NULL, "index" INTEGER NOT NULL, status TEXT NOT NULL, seed INTEGER,
                              video_uuid TEXT, video_url TEXT, path TEXT, cost REAL, progress REAL NOT NULL DEFAULT 0,
                              error_code TEXT, error_message TEXT, upload_status TEXT, webhook_status TEXT,
                              PRIMARY KEY (task_uuid, "index"));
        INSERT INTO tasks VALUES ('t1', NULL, '{}', 'success', 7, 1.0, 1.0, NULL);
        INSERT INTO results VALUES ('t1', 0, 'success', 7, 'v1', NULL, NULL, NULL, 1.0, NULL, NULL, NULL, 'pending');
    """)
    old.commit()
    old.close()

    store = TaskStore(path)
    record = store.get_task("t1")
    assert (record.results[0].video_uuid, record.results[0].extended_prompt) == ("v1", None)
    store.upsert_result(dataclasses.replace(record.results[0], extended_prompt="a longer prompt"))
    assert store.get_task("t1").results[0].extended_prompt == "a longer prompt"
    assert [(r.task_uuid, r.webhook_status) for r, _ in store.pending_deliveries()] == [("t1", "pending")]
    store.close()
    # Reopening a migrated database is a no-op.
    assert TaskStore(path).get_task("t1").results[0].extended_prompt == "a longer prompt"


def test_the_record_cache_answers_exactly_what_sqlite_holds(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    store.insert_task("t1", "k", "{}", base_seed=3, seeds=[3, 4])
    store.get_task("t1")  # cached now
    store.update_task_status("t1", "running")
    store.set_progress("t1", 1, 0.25)
    store.upsert_result(
        ResultRecord(
            task_uuid="t1",
            index=0,
            status="success",
            seed=3,
            video_uuid="v",
            extended_prompt="longer",
            webhook_status="pending",
        )
    )
    fresh = TaskStore(tmp_path / "tasks.db", cached_tasks=0)  # reads SQLite every time
    assert store.get_task("t1") == fresh.get_task("t1")
    assert store.get_task("t1").results[1].progress == 0.25
    fresh.close()
    store.close()


def test_the_background_checkpoint_moves_commits_into_the_database_file(tmp_path):
    import shutil
    import sqlite3
    import time

    store = TaskStore(tmp_path / "tasks.db", checkpoint_interval_s=0.05)
    for i in range(50):
        store.insert_task(f"t{i}", None, "{}", base_seed=i, seeds=[i])

    def in_main_file() -> int:
        # A copy of the database file alone, without its WAL: only checkpointed rows are there.
        shutil.copy(tmp_path / "tasks.db", tmp_path / "copy.db")
        copy = sqlite3.connect(tmp_path / "copy.db")
        try:
            return copy.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        except sqlite3.OperationalError:  # not even the schema is checkpointed yet
            return 0
        finally:
            copy.close()

    deadline = time.monotonic() + 30
    while in_main_file() < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_main_file() == 50
    store.close()


def test_an_ended_task_keeps_its_body_on_disk_only_and_its_digest(tmp_path):
    from farm.scheduler.store import body_digest

    store = TaskStore(tmp_path / "tasks.db")
    store.insert_task("t1", "k", '{"asset": "a-uuid"}', base_seed=1, seeds=[1], digest=body_digest('{"inline": "x"}'))
    assert store.get_task("t1").body == '{"asset": "a-uuid"}', "an unfinished task's body is at hand (resync)"
    store.update_task_status("t1", "success")
    assert store.get_task("t1").body == "", "out of the cache once it ended"
    assert TaskStore(tmp_path / "tasks.db", cached_tasks=0).get_task("t1").body == "", "and out of SQLite reads"
    assert store.get_body("t1") == '{"asset": "a-uuid"}'
    assert store.get_digest("t1") == body_digest('{"inline": "x"}')
    assert store.get_body("missing") is None and store.get_digest("missing") is None


def test_a_database_from_before_digests_compares_on_its_body(tmp_path):
    import sqlite3

    from farm.scheduler.store import body_digest

    path = tmp_path / "tasks.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE tasks (task_uuid TEXT PRIMARY KEY, api_key TEXT, body TEXT NOT NULL, status TEXT NOT NULL,
                            base_seed INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL, error TEXT);
        INSERT INTO tasks VALUES ('t1', NULL, '{"a":1}', 'queued', 7, 1.0, 1.0, NULL);
    """)
    old.commit()
    old.close()
    assert TaskStore(path).get_digest("t1") == body_digest('{"a":1}')


def test_prune_deletes_ended_tasks_and_their_results_before_the_cutoff(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    for name, status in (
        ("old-done", "success"),
        ("old-failed", "error"),
        ("old-waiting", "queued"),
        ("new", "cancelled"),
    ):
        store.insert_task(name, None, "{}", base_seed=1, seeds=[1, 2])
        store.update_task_status(name, status)
        store.get_task(name)  # cached
    with store._lock:
        store._db.execute("UPDATE tasks SET updated_at = 100 WHERE task_uuid LIKE 'old-%'")
    assert store.prune(finished_before=200) == 2
    assert store.get_task("old-done") is None and store.get_task("old-failed") is None
    assert store.get_task("old-waiting").status == "queued"
    assert store.get_task("new").status == "cancelled"
    with store._lock:
        orphans = store._db.execute("SELECT COUNT(*) FROM results WHERE task_uuid LIKE 'old-d%'").fetchone()[0]
    assert orphans == 0
    assert store.prune(finished_before=200) == 0


@pytest.mark.parametrize("damage", ["random", "zeroed", "truncated"])
def test_a_damaged_file_is_refused_naming_it_and_the_cause(tmp_path, damage):
    import os

    from farm.scheduler.store import StoreError

    path = tmp_path / "tasks.db"
    store = TaskStore(path)
    for i in range(200):
        store.insert_task(f"t{i}", "k", '{"x": "' + "y" * 2000 + '"}', base_seed=1, seeds=[1, 2])
    store.close()
    data = path.read_bytes()
    damaged = {
        "random": os.urandom(4096) + data[4096:],
        "zeroed": bytes(len(data)),
        "truncated": data[: len(data) * 6 // 10 + 123],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(StoreError) as refused:
        TaskStore(path)
    assert refused.value.path == path
    assert str(path) in str(refused.value)
    assert "malformed" in str(refused.value) or "not a database" in str(refused.value)
