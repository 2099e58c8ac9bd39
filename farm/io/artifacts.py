"""Where finished videos wait to be downloaded (``outputType: URL``).

``ArtifactStore`` is the interface the gateway codes against; ``LocalArtifactStore`` keeps the
files in a directory and their metadata in SQLite, so a restarted gateway still serves (and still
expires) every file it stored. An object-store backend can implement the same four methods.

    TaskNotFoundError                (farm.domain.errors; HTTP 404, gRPC NOT_FOUND)
    └── ArtifactNotFound             no artifact with that videoUUID (never stored, or deleted)
        └── ArtifactExpired          it existed, but its ttl has passed (HTTP 410)

``ArtifactExpired`` subclasses ``ArtifactNotFound`` so code that only cares "is it there?" catches
one class, while the HTTP face can answer 410 Gone for the expired case.

Each artifact records its **owner**: the API key of the task that rendered it (as a SHA-256
fingerprint: keys are secrets). Downloading a ``videoURL`` needs no key (the URL is a bearer
capability, docs/task-schema.md), but using a result as a media input of another task does: only
its owner's tasks may (``Artifact.visible_to``), as with uploaded assets.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from farm.domain.constants import FORMATS, output_format
from farm.domain.errors import TaskNotFoundError

__all__ = [
    "Artifact",
    "ArtifactStore",
    "LocalArtifactStore",
    "ArtifactNotFound",
    "ArtifactExpired",
    "content_type_for",
    "CONTENT_TYPES",
    "owner_tag",
]

#: Content type of each output format, as served at ``videoURL``.
CONTENT_TYPES: dict[str, str] = {name: f.content_type for name, f in FORMATS.items()}
_SUFFIXES: dict[str, str] = {f.content_type: "." + f.extension for f in FORMATS.values()}
#: videoUUIDs become file names: nothing that could climb out of the root or hide as a dotfile.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_TEMP_PREFIX = ".incoming-"
#: The owner of an artifact rendered while API keys were off: every caller may use it.
ANYONE = "*"


def owner_tag(api_key: str | None) -> str:
    """What the store records as an artifact's owner: a fingerprint of the key, or ``ANYONE``.

    >>> owner_tag(None), owner_tag("alice")[:15]
    ('*', 'sha256:2bd806c9')
    """
    if api_key is None:
        return ANYONE
    return "sha256:" + hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def content_type_for(name: str) -> str:
    """The content type of an output format: MP4 -> video/mp4, WEBM -> video/webm, MOV -> video/quicktime."""
    return output_format(name).content_type


class ArtifactNotFound(TaskNotFoundError):
    """No artifact with that videoUUID (HTTP 404, gRPC NOT_FOUND)."""

    code = "videoNotFound"
    http_status = 404


class ArtifactExpired(ArtifactNotFound):
    """The artifact existed but its ttl has passed; its file is (or is about to be) deleted (HTTP 410 Gone).

    ``artifact``: the expired ``Artifact`` when the store knows it (its owner, for media inputs)."""

    code = "videoExpired"
    http_status = 410
    artifact: Artifact | None = None


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """One stored file: where it is, what it is, and until when it may be downloaded."""

    video_uuid: str
    path: Path
    content_type: str
    size: int
    #: ``time.time()`` when stored.
    created_at: float
    #: ``time.time()`` after which it is gone; None keeps it until deleted.
    expires_at: float | None = None
    #: ``owner_tag`` of the API key that rendered it; None: unknown (stored by an older version).
    owner: str | None = None

    def expired(self, now: float) -> bool:
        """Whether the artifact's ttl has passed at ``now``."""
        return self.expires_at is not None and now >= self.expires_at

    def visible_to(self, api_key: str | None) -> bool:
        """Whether a task of ``api_key`` may use this artifact as a media input: its owner's, or
        anyone's when it was rendered while keys were off. One of unknown owner only while keys
        are off (``api_key`` None)."""
        if self.owner is None:
            return api_key is None
        return self.owner in (ANYONE, owner_tag(api_key))


class ArtifactStore(Protocol):
    """What the gateway needs from an artifact store."""

    def put(
        self, video_uuid: str, source: Path, content_type: str, ttl_s: float | None, *, owner_key: str | None = None
    ) -> Artifact:
        """Take ownership of the finished file ``source`` (moved, or copied then removed);
        ``owner_key`` is the API key of the task that rendered it."""
        ...

    def get(self, video_uuid: str) -> Artifact:
        """The artifact; ``ArtifactExpired`` if its ttl has passed, ``ArtifactNotFound`` if unknown."""
        ...

    def expire(self, now: float | None = None) -> int:
        """Delete every artifact whose ttl has passed; returns how many were deleted."""
        ...

    def delete(self, video_uuid: str) -> None:
        """Forget the artifact and delete its file; unknown UUIDs are ignored."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    video_uuid   TEXT PRIMARY KEY,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    -- 1 once expire() deleted the file: the row stays so the URL answers 410, not 404.
    gone         INTEGER NOT NULL DEFAULT 0,
    -- owner_tag() of the task's API key; NULL: stored before owners were recorded.
    owner        TEXT
);
CREATE INDEX IF NOT EXISTS artifacts_expiry ON artifacts (gone, expires_at);
"""
_COLUMNS = "file_name, content_type, size, created_at, expires_at, gone, owner"


class LocalArtifactStore:
    """Artifacts as files under ``root``, metadata in ``root/artifacts.sqlite3`` (WAL).

    ``put`` moves the file in with one rename when ``source`` is on the same filesystem, else
    copies it to a temporary name and renames that, so a reader never sees half a file. Safe to
    call from several threads. ``clock`` replaces ``time.time`` in tests. ``check`` runs SQLite's
    ``quick_check`` on the index first; any unusable index raises ``sqlite3.DatabaseError`` naming
    the file.

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> store = LocalArtifactStore(root / "videos", clock=lambda: 1000.0)
        >>> source = root / "render.mp4"
        >>> _ = source.write_bytes(b"fake mp4")
        >>> artifact = store.put("v1", source, content_type_for("MP4"), ttl_s=60)
        >>> artifact.size, artifact.content_type, artifact.expires_at, source.exists()
        (8, 'video/mp4', 1060.0, False)
        >>> store.expire(now=2000.0)
        1
        >>> store.get("v1")
        Traceback (most recent call last):
        ...
        farm.io.artifacts.ArtifactExpired: video v1 expired at 1060.0
    """

    #: The metadata database's file name under ``root``.
    DB_NAME = "artifacts.sqlite3"

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time, check: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self.db_path = self.root / self.DB_NAME
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        try:
            # A file that is not SQLite fails at its first statement, a damaged one in quick_check
            # (``check``: the gateway's start, which reads every page once; a media preparation
            # opening the store to read one row skips it).
            if check:
                problems = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
                if problems:
                    raise sqlite3.DatabaseError(f"quick_check: {'; '.join(str(p) for p in problems[:3])}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            if "owner" not in {row[1] for row in self._db.execute("PRAGMA table_info(artifacts)")}:
                self._db.execute("ALTER TABLE artifacts ADD COLUMN owner TEXT")
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise sqlite3.DatabaseError(f"the artifact store {self.db_path} is not usable: {error}") from None
        # Copies interrupted by a crash never got a row; nothing will ever serve them.
        for leftover in self.root.glob(_TEMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)

    def put(
        self, video_uuid: str, source: Path, content_type: str, ttl_s: float | None, *, owner_key: str | None = None
    ) -> Artifact:
        """Take ``source`` into the store (it no longer exists at its old path afterwards).

        ``ttl_s`` of None keeps the file until ``delete``. Storing a videoUUID again replaces it.
        ``owner_key``: the API key of the task that rendered it (None: keys are off, anyone's).
        """
        self._check_id(video_uuid)
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive or None, got {ttl_s}")
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"artifact source {source} is not a file")
        file_name = video_uuid + _SUFFIXES.get(content_type, source.suffix.lower())
        target = self.root / file_name
        self._move_in(source, target)
        now = self._clock()
        artifact = Artifact(
            video_uuid=video_uuid,
            path=target,
            content_type=content_type,
            size=target.stat().st_size,
            created_at=now,
            expires_at=None if ttl_s is None else now + ttl_s,
            owner=owner_tag(owner_key),
        )
        with self._lock:
            previous = self._db.execute(
                "SELECT file_name FROM artifacts WHERE video_uuid = ?", (video_uuid,)
            ).fetchone()
            self._db.execute(
                "INSERT OR REPLACE INTO artifacts"
                " (video_uuid, file_name, content_type, size, created_at, expires_at, gone, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    video_uuid,
                    file_name,
                    content_type,
                    artifact.size,
                    artifact.created_at,
                    artifact.expires_at,
                    artifact.owner,
                ),
            )
        if previous is not None and previous[0] != file_name:
            (self.root / previous[0]).unlink(missing_ok=True)
        return artifact

    def get(self, video_uuid: str) -> Artifact:
        """The artifact, if it is stored and its ttl has not passed.

        Raises ``ArtifactExpired`` once the ttl has passed (even before ``expire`` deleted the file)
        and ``ArtifactNotFound`` for an unknown or deleted videoUUID, or a file removed behind the
        store's back.
        """
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM artifacts WHERE video_uuid = ?", (video_uuid,)).fetchone()
        if row is None:
            raise ArtifactNotFound(f"video {video_uuid} not found")
        file_name, content_type, size, created_at, expires_at, gone, owner = row
        artifact = Artifact(
            video_uuid=video_uuid,
            path=self.root / file_name,
            content_type=content_type,
            size=size,
            created_at=created_at,
            expires_at=expires_at,
            owner=owner,
        )
        if gone or artifact.expired(self._clock()):
            expired = ArtifactExpired(f"video {video_uuid} expired at {expires_at}")
            # Who may hear that it expired (a media input of another key reads as unknown).
            expired.artifact = artifact
            raise expired
        if not artifact.path.is_file():
            raise ArtifactNotFound(f"video {video_uuid} not found (its file is missing)")
        return artifact

    def expire(self, now: float | None = None) -> int:
        """Delete the files of every artifact whose ttl has passed at ``now``; returns the count."""
        now = self._clock() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT video_uuid, file_name FROM artifacts WHERE gone = 0 AND expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).fetchall()
            for video_uuid, file_name in rows:
                (self.root / file_name).unlink(missing_ok=True)
                self._db.execute("UPDATE artifacts SET gone = 1 WHERE video_uuid = ?", (video_uuid,))
        return len(rows)

    def delete(self, video_uuid: str) -> None:
        """Forget the artifact and delete its file; afterwards ``get`` raises ``ArtifactNotFound``."""
        with self._lock:
            row = self._db.execute("SELECT file_name FROM artifacts WHERE video_uuid = ?", (video_uuid,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM artifacts WHERE video_uuid = ?", (video_uuid,))
            (self.root / row[0]).unlink(missing_ok=True)

    def count(self) -> int:
        """How many artifacts are stored and not expired (the gateway refuses an empty task
        store while there are any: see ``farm serve --fresh-store``)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM artifacts WHERE gone = 0").fetchone()[0]

    def unowned(self) -> list[str]:
        """videoUUIDs stored before owners were recorded."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT video_uuid FROM artifacts WHERE owner IS NULL")]

    def set_owner(self, video_uuid: str, owner_key: str | None) -> None:
        """Record the owner of an artifact stored before owners were (see ``put``'s ``owner_key``)."""
        with self._lock:
            self._db.execute("UPDATE artifacts SET owner = ? WHERE video_uuid = ?", (owner_tag(owner_key), video_uuid))

    def close(self) -> None:
        """Close the metadata database."""
        with self._lock:
            self._db.close()

    @staticmethod
    def _check_id(video_uuid: str) -> None:
        if not isinstance(video_uuid, str) or not _SAFE_ID.fullmatch(video_uuid):
            raise ValueError(f"video_uuid must be 1-128 letters, digits, '-' or '_', got {video_uuid!r}")

    def _move_in(self, source: Path, target: Path) -> None:
        try:
            os.replace(source, target)
            return
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
        # Another filesystem: copy under a temporary name, then rename, so the target is whole.
        temporary = self.root / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        source.unlink()
