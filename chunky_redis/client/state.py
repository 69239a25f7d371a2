"""The state file that lets a later run resume an upload.

It remembers only which upload a file went to: ``upload_id`` and the status
URL, keyed by the endpoint URL, the file's size and its modification time, so a
changed file or another server never resumes a stale upload. The offset is
always asked from the server (GET upload/<id>/), which alone knows what it
recorded. Headers (credentials) are never written here.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SUFFIX = ".chunky.json"
VERSION = 1


def default_path(path: str | os.PathLike[str]) -> Path:
    """``FILE.chunky.json`` next to FILE."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def entry_key(url: str, size: int, mtime_ns: int) -> str:
    return f"{url} {size} {mtime_ns}"


class StateFile:
    """A small JSON document ``{"version": 1, "uploads": {key: entry}}``, replaced atomically."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable or corrupt: resuming is an optimisation, start over
        uploads = data.get("uploads") if isinstance(data, dict) else None
        return uploads if isinstance(uploads, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._load().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("upload_id"), str):
            return entry
        return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        uploads = self._load()
        uploads[key] = {**entry, "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write(uploads)

    def remove(self, key: str) -> None:
        uploads = self._load()
        if uploads.pop(key, None) is None:
            return
        if uploads:
            self._write(uploads)
        else:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _write(self, uploads: dict[str, Any]) -> None:
        # Write a sibling temp file and rename it over the old one: a crash
        # leaves either the old state or the new one, never half of each.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".chunky-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": VERSION, "uploads": uploads}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
