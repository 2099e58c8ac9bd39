"""Suppressions carry their reason: every ruff ``noqa`` and mypy ``type: ignore`` comment names what
it silences and says why on the same line (ruff's RUF100 and mypy's warn_unused_ignores catch
stale ones)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOQA = re.compile(r"#\s*noqa(?P<rest>.*)$")
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
#: ``
NOQA_OK = re.compile(r"^:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+(-|\(|—)\s*\S")
IGNORE_OK = re.compile(r"^\[[a-z0-9_-]+(\s*,\s*[a-z0-9_-]+)*\]\s+#\s*\S")


def python_files() -> list[Path]:
    files = []
    for folder in ("farm", "models", "kernels", "tests", "benchmarks"):
        files += [p for p in (ROOT / folder).rglob("*.py") if "farm/v1" not in p.as_posix()]
    return sorted(files)


def test_every_suppression_names_its_code_and_gives_a_reason():
    bare = []
    for path in python_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, ok in ((NOQA, NOQA_OK), (IGNORE, IGNORE_OK)):
                match = pattern.search(line)
                if match and not ok.match(match.group("rest")):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "suppressions without a code and a reason:\n" + "\n".join(bare)


def test_the_check_itself():
    assert NOQA_OK.match(": BLE001 - the runner must outlive any task")
    assert not NOQA_OK.match(": BLE001")
    assert IGNORE_OK.match("[arg-type]  # checked by plan_clip")
    assert not IGNORE_OK.match("[arg-type]")
