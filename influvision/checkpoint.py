"""Resumable runs: finished media entries are recorded in a small SQLite file as they complete.

A rerun of ``track(..., checkpoint=FILE)`` over the same sources and settings takes finished media from
the file instead of analysing them again. An entry is reused only if the file's content is unchanged, the
settings (embedder, thresholds, sampling, version) are identical and the gallery registers the same people,
brands and references (a person removed since must not be named from an old result).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from .errors import InfluvisionError
from .report import MediaEntry
from .sources import MediaItem


class Checkpoint:
    """Finished media entries of runs with one set of settings and one gallery content.

    Args:
        path: the SQLite file (created if missing; entries of other settings or galleries in it are kept,
            not used).
        settings_json: the report's settings.
        gallery_key: :meth:`~influvision.gallery.Gallery.content_key` of the gallery tracked against.
    """

    def __init__(self, path: str | Path, settings_json: str, gallery_key: str):
        self.path = Path(path)
        self.settings = hashlib.sha256(f"{settings_json}|{gallery_key}".encode()).hexdigest()[:16]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        except (OSError, sqlite3.DatabaseError) as e:
            raise InfluvisionError(f"checkpoint {self.path}: cannot be opened or written ({e})") from None

    def _key(self, item: MediaItem, sha256: str) -> str:
        # Content, not modification time: archive members are re-extracted (new mtimes) on every run.
        return f"{self.settings}|{item.path}|{sha256}"

    def get(self, item: MediaItem, sha256: str) -> MediaEntry | None:
        """The finished entry for this file (``sha256``: its content hash), or None."""
        row = self._db.execute("SELECT entry FROM done WHERE key=?", (self._key(item, sha256),)).fetchone()
        return MediaEntry.model_validate_json(row[0]) if row else None

    def put(self, item: MediaItem, entry: MediaEntry, sha256: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?)",
                         (self._key(item, sha256), entry.model_dump_json()))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0])
