"""Durable task records: one SQLite file in WAL mode, shared by every gateway thread.

WAL lets readers (``GetResponse`` handlers) proceed while the runner writes progress, and
``synchronous=NORMAL`` keeps commits cheap while still surviving a process crash (only an OS
crash can lose the last transactions). One writer connection guarded by a lock serialises writes,
which SQLite does anyway; reads go through a read-only connection per thread, so they neither wait
for that lock nor for each other. Every read is one statement (one consistent snapshot) and every
write commits before it returns, so a read sees every write that returned before it began.

``get_task`` answers from a write-through cache of recent task records (the records a poller
asks for: those just submitted or running), updated under the writer lock in the same critical
section as each commit, so it says exactly what SQLite says. A miss reads SQLite and fills the
cache only if no write happened meanwhile (a version counter), so a stale snapshot never sticks.
This process must be the database's only writer (it is: one gateway per ``--data-dir``).

Bodies are kept in memory only while a task is unfinished: the record of an ended task carries
``body=""`` (from the cache and from SQLite alike), and ``get_body`` reads it when needed (a
delivery resumed after a restart). Duplicate submits compare ``body_digest`` (the SHA-256 of the
canonical body as first submitted), so a body the manager rewrote (inline media moved to the asset
store) still matches its resubmission. Finished tasks older than the retention period are deleted
by ``prune``.

Opening checks the file (``PRAGMA quick_check``) and raises ``StoreError`` naming it and the cause
when it is not a usable SQLite database: the gateway opens its stores before anything else starts,
so a corrupt file fails ``farm serve`` at once with the real reason.

Checkpoints (copying the WAL back into the database file, with an fsync) run on a background
thread every ``checkpoint_interval_s`` instead of inside whichever commit crosses SQLite's
1000-page mark: ``submit`` commits on the gateway's event loop, and an inline checkpoint there cost
milliseconds every ~150 submits. Durability is unchanged: a commit is in the WAL before it
returns; the checkpoint only moves it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from farm.domain.records import ResultRecord, ResultStatus, TaskRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_uuid  TEXT PRIMARY KEY,
    api_key    TEXT,
    body       TEXT NOT NULL,
    status     TEXT NOT NULL,
    base_seed  INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    error      TEXT,
    body_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_update ON tasks (status, updated_at);
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
    error_parameter TEXT,
    extended_prompt TEXT,
    PRIMARY KEY (task_uuid, "index")
);
"""
#: Columns added to ``results`` after the first release: ``TaskStore`` adds any that an existing
#: database lacks, so a gateway upgraded in place keeps its tasks.
_ADDED_RESULT_COLUMNS = (("error_parameter", "TEXT"), ("extended_prompt", "TEXT"))
_ADDED_TASK_COLUMNS = (("body_sha256", "TEXT"),)
#: Results whose upload or webhook was not finished (a restart must deliver them again). Created
#: after the migration, since it names columns an old database may lack.
_PENDING_INDEX = (
    "CREATE INDEX IF NOT EXISTS results_pending_delivery ON results (task_uuid)"
    " WHERE upload_status = 'pending' OR webhook_status = 'pending'"
)

_RESULT_COLUMNS = (
    "task_uuid",
    "index",
    "status",
    "seed",
    "video_uuid",
    "video_url",
    "cost",
    "progress",
    "error_code",
    "error_message",
    "upload_status",
    "webhook_status",
    "error_parameter",
    "extended_prompt",
)
_UNFINISHED: tuple[ResultStatus, ...] = ("queued", "running")
_FINISHED: tuple[ResultStatus, ...] = ("success", "error", "cancelled")
#: A task and its results (none: one row with NULL result columns), in index order. The body
#: only while the task is unfinished (see the module docstring).
_GET_TASK = (
    "SELECT t.task_uuid, t.api_key, CASE WHEN t.status IN ('queued', 'running') THEN t.body ELSE '' END,"
    " t.status, t.created_at, "
    + ", ".join(f'r."{name}"' for name in _RESULT_COLUMNS)
    + ' FROM tasks AS t LEFT JOIN results AS r ON r.task_uuid = t.task_uuid WHERE t.task_uuid = ? ORDER BY r."index"'
)


#: Task records kept in memory for ``get_task``; past it, the one cached longest ago is dropped
#: (hits do not reorder: that would need the writer lock on every read).
CACHED_TASKS = 20_000
#: How often the background thread checkpoints the WAL into the database file.
CHECKPOINT_INTERVAL_S = 1.0
#: The WAL file is truncated back to this size after a checkpoint lets SQLite restart it.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: Tasks deleted per transaction by ``prune`` (short transactions: submits never wait long).
_PRUNE_BATCH = 500


class StoreError(RuntimeError):
    """A store's file cannot be used: not a SQLite database, corrupt, or empty while results
    exist. Raised when the gateway opens its stores, before Ray starts; the message names the
    file and the cause. ``path`` is the file."""

    def __init__(self, message: str, path: str | Path):
        super().__init__(message)
        self.path = Path(path)


def body_digest(body: str) -> str:
    """The SHA-256 (hex) of a canonical task body: what duplicate submits are compared on."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def check_sqlite(db: sqlite3.Connection, path: str | Path, what: str) -> None:
    """Raise ``StoreError`` unless ``db`` (open on ``path``) passes ``PRAGMA quick_check``.

    ``quick_check`` reads every page (milliseconds for the store's few MB) but skips the index
    cross-checks of ``integrity_check``; a file that is not SQLite at all fails on the first read.
    """
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{what} {path} is not a usable SQLite database: {error}", path) from None
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise StoreError(f"{what} {path} is corrupt: {shown}", path)


def _checkpoint_loop(path: str, stop: threading.Event, interval_s: float) -> None:
    """PASSIVE checkpoints on their own connection: they never block the writer or readers."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        while not stop.wait(interval_s):
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:  # busy or closing: the next round catches up
                pass
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        pass
    finally:
        db.close()


class TaskStore:
    """Tasks and their results in SQLite at ``path`` (created if missing); safe from any thread.

    Example::

        store = TaskStore(Path("data/tasks.db"))
        store.insert_task(task_uuid, api_key, body, base_seed=7, seeds=[7])
        store.get_task(task_uuid).status   # "queued"
    """

    def __init__(
        self,
        path: str | Path,
        *,
        cached_tasks: int = CACHED_TASKS,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ):
        self.path = Path(path)
        self._cache: collections.OrderedDict[str, TaskRecord] = collections.OrderedDict()
        self._cache_size = cached_tasks
        #: Bumped by every write (under the lock): a read that raced a write does not fill the cache.
        self._version = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            check_sqlite(self._db, self.path, "the task store")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            # Checkpoints belong to the background thread, not to the commit that crosses the mark.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            with self._lock:
                self._db.executescript(_SCHEMA)
                self._migrate()
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise StoreError(
                f"the task store {self.path} is not a usable SQLite database: {error}", self.path
            ) from None
        except StoreError:
            self._db.close()
            raise
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(
            target=_checkpoint_loop,
            args=(str(self.path), self._stop_checkpoints, checkpoint_interval_s),
            name="sqlite-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()
        # A store dropped without close() still stops its thread.
        weakref.finalize(self, self._stop_checkpoints.set)
        self._local = threading.local()
        #: Every thread's read connection, so ``close`` closes them and dead threads' are dropped.
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}
        self._closed = False

    def _migrate(self) -> None:
        """Add the columns an older database lacks (``ALTER TABLE ... ADD COLUMN``)."""
        for table, added in (("results", _ADDED_RESULT_COLUMNS), ("tasks", _ADDED_TASK_COLUMNS)):
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in added:
                if name not in present:
                    self._db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
        self._db.execute(_PENDING_INDEX)

    def close(self) -> None:
        """Close the database (further calls fail); the WAL is checkpointed first."""
        self._stop_checkpoints.set()
        if self._checkpointer is not threading.current_thread():
            self._checkpointer.join(10)
        with self._lock:
            self._closed = True
            self._cache.clear()
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
            self._db.close()

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use)."""
        reader = getattr(self._local, "db", None)
        if reader is not None:
            return reader
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            for thread in [t for t in self._readers if not t.is_alive()]:
                self._readers.pop(thread).close()
            reader = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            reader.execute("PRAGMA busy_timeout=5000")
            reader.execute("PRAGMA query_only=1")
            self._readers[threading.current_thread()] = reader
        self._local.db = reader
        return reader

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
        digest: str | None = None,
    ) -> TaskRecord:
        """Persist a new task and one ``queued`` result row per seed, in one transaction.

        ``digest`` is what duplicates are compared on (``body_digest`` of the body as the client
        sent it; default: of ``body``). Raises ``sqlite3.IntegrityError`` if ``task_uuid`` exists.
        """
        now = time.time() if created_at is None else created_at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO tasks (task_uuid, api_key, body, status, base_seed, created_at, updated_at, body_sha256)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (task_uuid, api_key, body, status, base_seed, now, now, digest or body_digest(body)),
                )
                self._db.executemany(
                    'INSERT INTO results (task_uuid, "index", status, seed) VALUES (?, ?, ?, ?)',
                    [(task_uuid, i, status, seed) for i, seed in enumerate(seeds)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # Exactly what was written (the columns not inserted take their defaults).
            record = TaskRecord(
                task_uuid=task_uuid,
                api_key=api_key,
                body=body if status in _UNFINISHED else "",
                status=status,
                created_at=now,
                results=tuple(
                    ResultRecord(task_uuid=task_uuid, index=i, status=status, seed=seed) for i, seed in enumerate(seeds)
                ),
            )
            self._version += 1
            self._remember(record)
        return record

    def stored_ids(self, task_uuids: Sequence[str]) -> set[str]:
        """Which of ``task_uuids`` are stored (one statement; a new task's admission asks this)."""
        known = {t for t in task_uuids if t in self._cache}
        rest = [t for t in task_uuids if t not in known]
        if rest:
            marks = ",".join("?" * len(rest))
            rows = self._reader().execute(f"SELECT task_uuid FROM tasks WHERE task_uuid IN ({marks})", rest)
            known.update(row[0] for row in rows)
        return known

    def cached_task(self, task_uuid: str) -> TaskRecord | None:
        """The task if it is in the memory cache (no statement), else None (it may still be stored)."""
        return self._cache.get(task_uuid)  # a dict read: atomic under the GIL

    def get_task(self, task_uuid: str) -> TaskRecord | None:
        """The task with every result, or None."""
        record = self.cached_task(task_uuid)
        if record is not None:
            return record
        version = self._version
        # One statement, so the task and its results come from the same snapshot.
        rows = self._reader().execute(_GET_TASK, (task_uuid,)).fetchall()
        if not rows:
            return None
        first = rows[0]
        results = tuple(ResultRecord(**dict(zip(_RESULT_COLUMNS, row[5:]))) for row in rows if row[6] is not None)
        record = TaskRecord(
            task_uuid=first[0], api_key=first[1], body=first[2], status=first[3], created_at=first[4], results=results
        )
        with self._lock:
            if self._version == version and not self._closed:
                self._remember(record)
        return record

    # -- the cache (every method below runs under ``_lock``) --------------------------------------

    def _remember(self, record: TaskRecord) -> None:
        self._cache[record.task_uuid] = record
        self._cache.move_to_end(record.task_uuid)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _cached_result(self, task_uuid: str, index: int, change) -> None:
        """Apply ``change(result) -> result`` to a cached result (nothing if not cached)."""
        self._version += 1
        record = self._cache.get(task_uuid)
        if record is None:
            return
        results = list(record.results)
        for i, result in enumerate(results):
            if result.index == index:
                results[i] = change(result)
                break
        else:
            added = change(None)
            if added is None:  # nothing to add from a partial change: read SQLite next time
                del self._cache[task_uuid]
                return
            results.append(added)
            results.sort(key=lambda r: r.index)
        self._cache[task_uuid] = dataclasses.replace(record, results=tuple(results))

    def get_body(self, task_uuid: str) -> str | None:
        """The task's stored body (also of an ended task, whose record carries none), or None."""
        row = self._reader().execute("SELECT body FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        return None if row is None else row[0]

    def get_digest(self, task_uuid: str) -> str | None:
        """``body_digest`` of the body as first submitted (rows from before the column: of the body)."""
        row = self._reader().execute("SELECT body_sha256, body FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        if row is None:
            return None
        return row[0] or body_digest(row[1])

    def get_base_seed(self, task_uuid: str) -> int | None:
        """The base seed chosen at submit (so a resumed render gives the same pictures)."""
        row = self._reader().execute("SELECT base_seed FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        return None if row is None else row[0]

    def get_error(self, task_uuid: str) -> str | None:
        """The task-level error message, if the task failed as a whole."""
        row = self._reader().execute("SELECT error FROM tasks WHERE task_uuid = ?", (task_uuid,)).fetchone()
        return None if row is None else row[0]

    def update_task_status(self, task_uuid: str, status: ResultStatus, error: str | None = None) -> None:
        """Set the task's status (and error message, when it failed)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET status = ?, error = ?, updated_at = ? WHERE task_uuid = ?",
                (status, error, time.time(), task_uuid),
            )
            self._version += 1
            record = self._cache.get(task_uuid)
            if record is not None:
                # An ended task's body leaves memory (it may have been megabytes).
                body = record.body if status in _UNFINISHED else ""
                self._cache[task_uuid] = dataclasses.replace(record, status=status, body=body)

    def prune(self, finished_before: float) -> int:
        """Delete every task that ended (``success``/``error``/``cancelled``) before
        ``finished_before`` (a ``time.time()``), with its results; returns how many.

        Runs in short transactions of ``_PRUNE_BATCH`` tasks, so submits never wait long.
        """
        removed = 0
        while True:
            with self._lock:
                uuids = [
                    row[0]
                    for row in self._db.execute(
                        "SELECT task_uuid FROM tasks WHERE status IN (?, ?, ?) AND updated_at < ? LIMIT ?",
                        (*_FINISHED, finished_before, _PRUNE_BATCH),
                    )
                ]
                if not uuids:
                    return removed
                marks = ", ".join("?" * len(uuids))
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(f"DELETE FROM results WHERE task_uuid IN ({marks})", uuids)
                    self._db.execute(f"DELETE FROM tasks WHERE task_uuid IN ({marks})", uuids)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._version += 1
                for uuid in uuids:
                    self._cache.pop(uuid, None)
            removed += len(uuids)

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
            self._cached_result(record.task_uuid, record.index, lambda _: record)

    def set_progress(self, task_uuid: str, index: int, progress: float) -> None:
        """Only the progress of one result (the runner's frequent, throttled write)."""
        with self._lock:
            self._db.execute(
                'UPDATE results SET progress = ? WHERE task_uuid = ? AND "index" = ?', (progress, task_uuid, index)
            )
            self._cached_result(
                task_uuid, index, lambda r: r if r is None else dataclasses.replace(r, progress=progress)
            )

    def pending_deliveries(self) -> list[tuple[ResultRecord, str]]:
        """Results whose upload or webhook is still ``pending`` (a delivery cut off by a restart),
        each with its task's body, oldest task first."""
        rows = (
            self._reader()
            .execute(
                "SELECT " + ", ".join(f'r."{name}"' for name in _RESULT_COLUMNS) + ", t.body"
                " FROM results AS r JOIN tasks AS t ON t.task_uuid = r.task_uuid"
                " WHERE r.upload_status = 'pending' OR r.webhook_status = 'pending'"
                ' ORDER BY t.created_at, r."index"'
            )
            .fetchall()
        )
        return [(ResultRecord(**dict(zip(_RESULT_COLUMNS, row[:-1]))), row[-1]) for row in rows]

    def video_owners(self) -> dict[str, str | None]:
        """The API key (None: keys were off) of every task result with a videoUUID, by videoUUID
        (to record owners of artifacts stored before the artifact store kept them)."""
        rows = (
            self._reader()
            .execute(
                "SELECT r.video_uuid, t.api_key FROM results AS r JOIN tasks AS t ON t.task_uuid = r.task_uuid"
                " WHERE r.video_uuid IS NOT NULL"
            )
            .fetchall()
        )
        return {video_uuid: api_key for video_uuid, api_key in rows}

    def result_path(self, task_uuid: str, index: int) -> Path | None:
        """The local file of a finished result, if one was recorded."""
        row = (
            self._reader()
            .execute('SELECT path FROM results WHERE task_uuid = ? AND "index" = ?', (task_uuid, index))
            .fetchone()
        )
        return None if row is None or row[0] is None else Path(row[0])
