"""Inline media moved to the asset store at submit, and results as inputs for their owner only.

``store_inline_media`` replaces every data URI and bare base64 string of a task's ``inputs`` by the
UUID of a content-addressed asset owned by the submitting key; ``MediaResolver`` then reads it back
for that key only. A result stored with ``owner_key`` is an input for that key's tasks only, with
the refusal an unknown UUID gets (``farm.io.artifacts.Artifact.visible_to``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import time
import uuid

import pytest
from PIL import Image

from farm.domain.errors import TaskValidationError
from farm.domain.validation import parse_task
from farm.io.artifacts import LocalArtifactStore
from farm.io.media import MediaResolver, expire_assets, inline_asset_uuid, resolve_inputs, store_inline_media
from farm.io.urlguard import UrlGuard

LOOPBACK = UrlGuard(allow=["127.0.0.1"])
UNKNOWN = "no uploaded asset or earlier result with this UUID is visible to this API key"


def _png(shade: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (shade, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _fetch(resolver: MediaResolver, ref: str) -> bytes | str:
    """The bytes, or the violation's message."""
    try:
        return resolver.fetch(ref, "inputs.frameImages[0]")
    except TaskValidationError as error:
        return error.violations[0].message


def test_every_inline_slot_becomes_an_asset_of_the_key_and_references_stay(tmp_path, make_task):
    png, other = _png(), _png(90)
    b64 = base64.b64encode(png).decode()
    url, known = "https://example.com/a.png", str(uuid.uuid4())
    task = make_task(
        positivePrompt="@hero walks",
        inputs={
            "frameImages": [
                f"data:image/png;base64,{b64}",
                {"image": base64.urlsafe_b64encode(other).decode(), "frame": "last"},
            ],
            "referenceImages": [{"type": "image", "tag": "@hero", "images": [url, known, b64]}],
        },
    )
    original = json.loads(json.dumps(task))
    stored = store_inline_media(task, assets_dir=tmp_path, api_key="alice")
    assert task == original, "the submitted dict is left as it was"
    frames, group = stored["inputs"]["frameImages"], stored["inputs"]["referenceImages"][0]
    assert frames[0] == group["images"][2] == inline_asset_uuid(png, "alice"), "same bytes, one asset"
    assert frames[1] == {"image": inline_asset_uuid(other, "alice"), "frame": "last"}
    assert group["images"][:2] == [url, known]
    assert {k: v for k, v in stored.items() if k != "inputs"} == {k: v for k, v in task.items() if k != "inputs"}
    sidecar = json.loads((tmp_path / f"{frames[0]}.json").read_text())
    assert (sidecar["apiKey"], sidecar["contentType"], sidecar["size"]) == ("alice", "image/png", len(png))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no partial file left"
    parse_task(stored)  # still a valid task

    mine = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path, api_key="alice")
    theirs = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path, api_key="bob")
    assert _fetch(mine, frames[0]) == png
    assert _fetch(theirs, frames[0]) == UNKNOWN


def test_a_task_without_inline_media_is_returned_as_is(tmp_path, make_task):
    task = make_task(inputs={"frameImages": ["https://example.com/a.png"]})
    assert store_inline_media(task, assets_dir=tmp_path, api_key=None) is task
    plain = make_task()
    assert store_inline_media(plain, assets_dir=tmp_path, api_key=None) is plain


def test_storing_the_same_bytes_again_writes_nothing_and_keys_get_their_own_assets(tmp_path, make_task):
    png = _png()
    task = make_task(inputs={"frameImages": [base64.b64encode(png).decode()]})
    first = store_inline_media(task, assets_dir=tmp_path, api_key="alice")
    asset = tmp_path / first["inputs"]["frameImages"][0]
    written = asset.stat().st_mtime_ns
    assert store_inline_media(task, assets_dir=tmp_path, api_key="alice") == first
    assert asset.stat().st_mtime_ns == written
    bob = store_inline_media(task, assets_dir=tmp_path, api_key="bob")
    assert bob["inputs"]["frameImages"][0] != first["inputs"]["frameImages"][0]
    anonymous = store_inline_media(task, assets_dir=tmp_path, api_key=None)
    everyone = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path, api_key="carol")
    assert _fetch(everyone, anonymous["inputs"]["frameImages"][0]) == png, "stored while keys are off: anyone's"


def test_expire_assets_deletes_unused_assets_whole_and_nothing_else(tmp_path, make_task):
    """Bytes and sidecar go together; a kept asset, a recently used one (storing the same bytes
    again counts as a use) and files that are not assets stay."""
    refs = [
        store_inline_media(
            make_task(inputs={"frameImages": [base64.b64encode(_png(shade)).decode()]}),
            assets_dir=tmp_path,
            api_key="alice",
        )["inputs"]["frameImages"][0]
        for shade in (10, 20, 30, 40)
    ]
    stray = [tmp_path / "notes.txt", tmp_path / f"{uuid.uuid4()}.part"]
    for path in stray:
        path.write_bytes(b"x")
    then = time.time() - 7200
    for path in tmp_path.iterdir():
        os.utime(path, (then, then))
    # Stored again now: the same asset, used now.
    assert (
        store_inline_media(
            make_task(inputs={"frameImages": [base64.b64encode(_png(40)).decode()]}),
            assets_dir=tmp_path,
            api_key="alice",
        )["inputs"]["frameImages"][0]
        == refs[3]
    )

    asked: list[int] = []

    def keep() -> set[str]:
        asked.append(1)
        return {refs[2]}

    assert expire_assets(tmp_path, unused_since=time.time() - 3 * 3600, keep=keep) == 0
    assert asked == [], "nothing that old: the kept set is not even computed"
    assert expire_assets(tmp_path, unused_since=time.time() - 3600, keep=keep) == 2
    assert asked == [1]
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {*(p.name for p in stray), refs[2], f"{refs[2]}.json", refs[3], f"{refs[3]}.json"}
    assert expire_assets(tmp_path / "missing", unused_since=time.time()) == 0


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("not*base64", "not a UUID, an http(s) URL, a data URI or valid base64"),
        ("data:image/png,abc", "only base64 data URIs are accepted"),
        ("data:image/png;base64,", "data URI payload is empty"),
    ],
)
def test_inline_media_that_does_not_decode_is_refused_naming_the_field(tmp_path, make_task, ref, message):
    task = make_task(inputs={"frameImages": [{"image": "https://example.com/ok.png", "frame": "first"}, ref]})
    with pytest.raises(TaskValidationError) as refused:
        store_inline_media(task, assets_dir=tmp_path, api_key="k")
    ((violation),) = refused.value.violations
    assert violation.field == "inputs.frameImages[1]" and message in violation.message
    assert list(tmp_path.iterdir()) == [], "nothing stored for a refused task"


def test_a_stored_task_resolves_to_the_same_pictures_as_the_inline_one(tmp_path, make_task):
    png = _png(123)
    task = make_task(inputs={"frameImages": [base64.b64encode(png).decode()]})
    resolver = MediaResolver(guard=LOOPBACK, assets_dir=tmp_path, api_key="alice")
    inline = resolve_inputs(parse_task(task), resolver)
    stored = resolve_inputs(parse_task(store_inline_media(task, assets_dir=tmp_path, api_key="alice")), resolver)
    assert (inline.frame_images[0].image == stored.frame_images[0].image).all()


# -- results: inputs for their owner only --------------------------------------------------------


def _result(store: LocalArtifactStore, tmp_path, owner_key, ttl_s=60) -> str:
    source = tmp_path / f"{uuid.uuid4()}.mp4"
    source.write_bytes(b"the farm's own video")
    video_uuid = str(uuid.uuid4())
    store.put(video_uuid, source, "video/mp4", ttl_s, owner_key=owner_key)
    return video_uuid


def test_a_result_is_an_input_for_its_owners_tasks_only(tmp_path):
    now = [1000.0]
    store = LocalArtifactStore(tmp_path / "videos", clock=lambda: now[0])
    alices = _result(store, tmp_path, "alice")
    public = _result(store, tmp_path, None)
    resolvers = {
        key: MediaResolver(guard=LOOPBACK, assets_dir=tmp_path / "assets", artifacts=store, api_key=key)
        for key in ("alice", "bob", None)
    }
    assert _fetch(resolvers["alice"], alices) == b"the farm's own video"
    assert _fetch(resolvers["bob"], alices) == UNKNOWN, "as for a UUID that does not exist"
    assert _fetch(resolvers[None], alices) == UNKNOWN
    assert _fetch(resolvers["bob"], public) == b"the farm's own video", "rendered while keys were off"
    now[0] = 5000.0
    assert "has expired" in _fetch(resolvers["alice"], alices)
    assert _fetch(resolvers["bob"], alices) == UNKNOWN, "expiry is not revealed to another key either"
    store.close()


def test_an_artifact_store_from_before_owners_gains_the_column_and_learns_owners(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "v1.mp4").write_bytes(b"old")
    old = sqlite3.connect(root / LocalArtifactStore.DB_NAME)
    old.executescript("""
        CREATE TABLE artifacts (video_uuid TEXT PRIMARY KEY, file_name TEXT NOT NULL, content_type TEXT NOT NULL,
                                size INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL,
                                gone INTEGER NOT NULL DEFAULT 0);
        INSERT INTO artifacts VALUES ('v1', 'v1.mp4', 'video/mp4', 3, 1.0, NULL, 0);
    """)
    old.commit()
    old.close()
    store = LocalArtifactStore(root)
    assert store.unowned() == ["v1"] and store.count() == 1
    legacy = store.get("v1")
    assert legacy.owner is None and legacy.visible_to(None) and not legacy.visible_to("alice")
    store.set_owner("v1", "alice")
    assert store.unowned() == [] and store.get("v1").visible_to("alice") and not store.get("v1").visible_to("bob")


def test_a_damaged_artifact_index_is_refused_naming_it(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / LocalArtifactStore.DB_NAME).write_bytes(b"\0" * 8192)
    for check in (False, True):
        with pytest.raises(sqlite3.DatabaseError, match="artifacts.sqlite3"):
            LocalArtifactStore(root, check=check)
