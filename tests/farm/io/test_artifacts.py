"""LocalArtifactStore: files in, served until their ttl, expired as 410-able errors, survive restarts."""

from __future__ import annotations

import doctest
import threading
from pathlib import Path

import pytest

import farm.io.artifacts
from farm.domain.errors import TaskNotFoundError, error_info
from farm.io.artifacts import (
    Artifact,
    ArtifactExpired,
    ArtifactNotFound,
    ArtifactStore,
    LocalArtifactStore,
    content_type_for,
)


class Clock:
    """A settable clock, so ttl tests never sleep."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rendered(tmp_path: Path, name: str = "render.mp4", data: bytes = b"\x00\x00\x00\x18ftypmp42 fake") -> Path:
    source = tmp_path / "render-out" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    return source


def test_content_types():
    assert content_type_for("MP4") == "video/mp4"
    assert content_type_for("webm") == "video/webm"
    assert content_type_for("MOV") == "video/quicktime"
    with pytest.raises(ValueError, match="output.format must be one of"):
        content_type_for("GIF")


def test_put_moves_the_file_in_and_get_returns_it(tmp_path):
    clock = Clock()
    store = LocalArtifactStore(tmp_path / "store", clock=clock)
    source = rendered(tmp_path, data=b"video bytes")
    artifact = store.put("0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10", source, "video/mp4", ttl_s=3600)
    assert not source.exists()
    assert artifact.path.parent == tmp_path / "store"
    assert artifact.path.name == "0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10.mp4"
    assert artifact.path.read_bytes() == b"video bytes"
    assert (artifact.size, artifact.content_type) == (11, "video/mp4")
    assert (artifact.created_at, artifact.expires_at) == (1_000.0, 4_600.0)
    assert store.get("0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10") == artifact


def test_file_suffix_follows_the_content_type(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    assert store.put("a", rendered(tmp_path, "x.bin"), "video/webm", None).path.name == "a.webm"
    assert store.put("b", rendered(tmp_path, "x.bin"), "video/quicktime", None).path.name == "b.mov"


def test_copy_across_filesystems(tmp_path, monkeypatch):
    # A render directory on another filesystem: rename fails with EXDEV, the store copies.
    import errno
    import os

    real_replace = os.replace

    def replace(src, dst):
        if Path(src).parent.name == "render-out":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst)

    monkeypatch.setattr(farm.io.artifacts.os, "replace", replace)
    store = LocalArtifactStore(tmp_path / "store")
    source = rendered(tmp_path, data=b"x" * 100_000)
    artifact = store.put("v", source, "video/mp4", None)
    assert artifact.path.read_bytes() == b"x" * 100_000
    assert not source.exists()
    assert [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith(".incoming")] == []


def test_unknown_and_expired_are_different_errors(tmp_path):
    clock = Clock()
    store = LocalArtifactStore(tmp_path / "store", clock=clock)
    store.put("short", rendered(tmp_path), "video/mp4", ttl_s=60)
    store.put("forever", rendered(tmp_path), "video/mp4", ttl_s=None)

    with pytest.raises(ArtifactNotFound) as unknown:
        store.get("never-stored")
    assert not isinstance(unknown.value, ArtifactExpired)
    assert isinstance(unknown.value, TaskNotFoundError)
    assert error_info(unknown.value).grpc_status == "NOT_FOUND"

    clock.now += 61
    # Expired as soon as the ttl passes, even before expire() ran.
    with pytest.raises(ArtifactExpired, match="video short expired"):
        store.get("short")
    assert store.get("forever").expires_at is None


def test_expire_deletes_files_and_keeps_answering_expired(tmp_path):
    clock = Clock()
    store = LocalArtifactStore(tmp_path / "store", clock=clock)
    paths = [store.put(f"v{i}", rendered(tmp_path), "video/mp4", ttl_s=60 * (i + 1)).path for i in range(3)]
    store.put("keep", rendered(tmp_path), "video/mp4", ttl_s=None)

    assert store.expire(now=1_000.0 + 130) == 2
    assert [p.exists() for p in paths] == [False, False, True]
    assert store.expire(now=1_000.0 + 130) == 0  # already gone: not counted twice
    clock.now = 1_000.0 + 10_000
    assert store.expire() == 1
    for name in ("v0", "v1", "v2"):
        with pytest.raises(ArtifactExpired):
            store.get(name)
    assert store.get("keep").path.exists()


def test_delete_forgets(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    path = store.put("v", rendered(tmp_path), "video/mp4", ttl_s=None).path
    store.delete("v")
    assert not path.exists()
    with pytest.raises(ArtifactNotFound):
        store.get("v")
    store.delete("v")  # idempotent


def test_put_again_replaces(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    store.put("v", rendered(tmp_path, data=b"old"), "video/mp4", ttl_s=None)
    artifact = store.put("v", rendered(tmp_path, data=b"newer"), "video/webm", ttl_s=None)
    assert store.get("v") == artifact and artifact.path.read_bytes() == b"newer"
    assert sorted(p.name for p in (tmp_path / "store").glob("v.*")) == ["v.webm"]


def test_survives_a_restart(tmp_path):
    clock = Clock()
    first = LocalArtifactStore(tmp_path / "store", clock=clock)
    artifact = first.put("v", rendered(tmp_path), "video/quicktime", ttl_s=300)
    first.put("old", rendered(tmp_path), "video/mp4", ttl_s=60)
    clock.now += 100
    first.expire()
    first.close()
    (tmp_path / "store" / ".incoming-deadbeef").write_bytes(b"half a copy")

    second = LocalArtifactStore(tmp_path / "store", clock=clock)
    assert second.get("v") == artifact
    with pytest.raises(ArtifactExpired):
        second.get("old")
    assert not (tmp_path / "store" / ".incoming-deadbeef").exists()


def test_missing_file_is_not_found(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    store.put("v", rendered(tmp_path), "video/mp4", ttl_s=None).path.unlink()
    with pytest.raises(ArtifactNotFound, match="missing"):
        store.get("v")


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "", "x" * 200, "a b"])
def test_refuses_unsafe_ids(tmp_path, bad):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(ValueError, match="video_uuid must be"):
        store.put(bad, rendered(tmp_path), "video/mp4", ttl_s=None)


def test_refuses_bad_ttl_and_missing_source(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(ValueError, match="ttl_s must be positive"):
        store.put("v", rendered(tmp_path), "video/mp4", ttl_s=0)
    with pytest.raises(FileNotFoundError):
        store.put("v", tmp_path / "nothing.mp4", "video/mp4", ttl_s=None)


def test_concurrent_puts_and_gets(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                name = f"w{worker}-{i}"
                store.put(name, rendered(tmp_path, f"{name}.mp4", name.encode()), "video/mp4", ttl_s=600)
                assert store.get(name).path.read_bytes() == name.encode()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_local_store_satisfies_the_protocol(tmp_path):
    store: ArtifactStore = LocalArtifactStore(tmp_path / "store")
    assert isinstance(store.put("v", rendered(tmp_path), "video/mp4", None), Artifact)


def test_docstring_examples():
    assert doctest.testmod(farm.io.artifacts).failed == 0
