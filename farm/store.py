"""Durable task records: one SQLite file in WAL mode, shared by every gateway thread.

WAL lets readers (``GetResponse`` handlers) proceed while the runner writes progress, and
``synchronous=NORMAL`` keeps commits cheap while still surviving a process crash (only an OS
crash can lose the last transactions). A single connection guarded by a lock serialises writers,
which SQLite does anyway, and keeps the class safe to call from any thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from farm.lifecycle import ResultRecord, ResultStatus, TaskRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_uuid  TEXT PRIMARY KEY,
    api_key    TEXT,
    body       TEXT NOT NULL,
    status     TEXT NOT NULL,
    base_seed  INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, created_at);
CREATE TABLE IF NOT EXISTS results (
    task_uuid      TEXT NOT NULL REFERENCES tasks (task_uuid),
    "index"        INTEGER NOT NULL,
    status         TEXT NOT NULL,
    seed           INTEGER,
    video_uuid     TEXT,
    video_url      TEXT,
    path           TEXT,
    cost           REAL,
    progress       REAL NOT NULL DEFAULT 0,
    error_code     TEXT,
    error_message  TEXT,
    upload_status  TEXT,
    webhook_status TEXT,
    PRIMARY KEY (task_uuid, "index")
);
"""

_RESULT_COLUMNS = (
    "task_uuid", "index", "status", "seed", "video_uuid", "video_url", "cost", "progress",
    "error_code", "error_message", "upload_status", "webhook_status",
)
_UNFINISHED: tuple[ResultStatus, ...] = ("queued", "running")


class TaskStore:
    """Tasks and their results in SQLite at ``path`` (created if missing); safe from any thread.

    Example::

        store = TaskStore(Path("data/tasks.db"))
        store.insert_task(task_uuid, api_key, body, base_seed=7, seeds=[7])
        store.get_task(task_uuid).status   # "queued"
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (further calls fail)."""
        with self._lock:
            self._db.close()

    # -- tasks ---------------------------------------------------------------------------------

    def insert_task(
        self,
        task_uuid: str,
        api_key: str | None,
        body: str,
        *,
        base_seed: int | None,
        seeds: list[int],
        status: ResultStatus = "queued",
        created_at: float | None = None,
    ) -> TaskRecord:
        """Persist a new task and one ``queued`` result row per seed, in one transaction.

        Raises ``sqlite3.IntegrityError`` if ``task_uuid`` exists (the manager checks first).
        """
        now = time.time() if created_at is None else created_at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO tasks (task_uuid, api_key, body, status, base_seed, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (task_uuid, api_key, body, status, base_seed, now, now),
                )
                self._db.executemany(
                    'INSERT INTO results (task_uuid, "index", status, seed) VALUES (?, ?, ?, ?)',
                    [(task_uuid, i, status, seed) for i, seed in enumerate(seeds)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get_task(task_uuid)

    def get_task(self, task_uuid: str) -> TaskRecord | None:
        """The task with every result, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT task_uuid, api_key, body, status, created_at FROM tasks WHERE task_uuid = ?",
                (task_uuid,),
            ).fetchone()
            if row is None:
                return None
            results = self._results(task_uuid)
        return TaskRecord(task_uuid=row[0], api_key=row[1], body=row[2], status=row[3], created_at=row[4],
                          results=results)

    def get_base_seed(self, task_uuid: str) -> int | None:
        """The base seed chosen at submit (so a resumed render gives the same pictures)."""
        with self._lock:
            row = self._db.execute("SELECT base_seed FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        return None if row is None else row[0]

    def get_error(self, task_uuid: str) -> str | None:
        """The task-level error message, if the task failed as a whole."""
        with self._lock:
            row = self._db.execute("SELECT error FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        return None if row is None else row[0]

    def update_task_status(self, task_uuid: str, status: ResultStatus, error: str | None = None) -> None:
        """Set the task's status (and error message, when it failed)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET status = ?, error = ?, updated_at = ? WHERE task_uuid = ?",
                (status, error, time.time(), task_uuid),
            )

    def unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks still ``queued`` or ``running``, oldest first (what a restart must resume)."""
        with self._lock:
            uuids = [
                row[0]
                for row in self._db.execute(
                    "SELECT task_uuid FROM tasks WHERE status IN (?, ?) ORDER BY created_at, rowid", _UNFINISHED
                )
            ]
        return [record for uuid in uuids if (record := self.get_task(uuid)) is not None]

    def count_queued(self) -> int:
        """How many tasks wait in the queue."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").fetchone()[0]

    # -- results -------------------------------------------------------------------------------

    def upsert_result(self, record: ResultRecord, path: str | Path | None = None) -> None:
        """Write every field of ``record``; ``path`` (the local file) is kept unless given."""
        values = [getattr(record, name) for name in _RESULT_COLUMNS]
        columns = ", ".join(f'"{name}"' for name in _RESULT_COLUMNS)
        updates = ", ".join(f'"{name}" = excluded."{name}"' for name in _RESULT_COLUMNS[2:])
        with self._lock:
            self._db.execute(
                f"INSERT INTO results ({columns}, path) VALUES ({', '.join('?' * len(values))}, ?)"
                f' ON CONFLICT (task_uuid, "index") DO UPDATE SET {updates},'
                " path = COALESCE(excluded.path, results.path)",
                (*values, None if path is None else str(path)),
            )

    def set_progress(self, task_uuid: str, index: int, progress: float) -> None:
        """Only the progress of one result (the runner's frequent, throttled write)."""
        with self._lock:
            self._db.execute(
                'UPDATE results SET progress = ? WHERE task_uuid = ? AND "index" = ?', (progress, task_uuid, index)
            )

    def result_path(self, task_uuid: str, index: int) -> Path | None:
        """The local file of a finished result, if one was recorded."""
        with self._lock:
            row = self._db.execute(
                'SELECT path FROM results WHERE task_uuid = ? AND "index" = ?', (task_uuid, index)
            ).fetchone()
        return None if row is None or row[0] is None else Path(row[0])

    def _results(self, task_uuid: str) -> tuple[ResultRecord, ...]:
        columns = ", ".join(f'"{name}"' for name in _RESULT_COLUMNS)
        rows = self._db.execute(
            f'SELECT {columns} FROM results WHERE task_uuid = ? ORDER BY "index"', (task_uuid,)
        ).fetchall()
        return tuple(ResultRecord(**dict(zip(_RESULT_COLUMNS, row))) for row in rows)
