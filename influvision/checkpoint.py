"""Resumable runs: finished media entries are recorded in a small SQLite file as they complete.

A rerun of ``track(..., checkpoint=FILE)`` over the same sources and settings takes finished media from
the file instead of analysing them again. An entry is reused only if the file's content is unchanged, the
settings (embedder, thresholds, sampling, version) are identical and the gallery registers the same people,
brands and references (a person removed since must not be named from an old result).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

from pydantic import ValidationError

from .errors import InfluvisionError
from .report import MediaEntry
from .sources import MediaItem

log = logging.getLogger(__name__)


class Checkpoint:
    """Finished media entries of runs with one set of settings and one gallery content.

    Args:
        path: the SQLite file (created if missing; entries of other settings or galleries in it are kept,
            not used).
        settings_json: per media kind (``"photo"``, ``"video"``), the settings its results depend on.
        gallery_key: :meth:`~influvision.gallery.Gallery.content_key` of the gallery tracked against.
    """

    def __init__(self, path: str | Path, settings_json: dict[str, str], gallery_key: str):
        self.path = Path(path)
        self.settings = {kind: hashlib.sha256(f"{text}|{gallery_key}".encode()).hexdigest()[:16]
                         for kind, text in settings_json.items()}
        if self.path.is_dir():
            raise InfluvisionError(f"checkpoint {self.path}: is a folder; give the path of a file (it is created "
                                   "when missing)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"damaged: {check}")
            others = sorted(r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                            if r[0] != "done")
            if others:  # e.g. the gallery given as the checkpoint: never write into it
                self._db.close()
                raise InfluvisionError(f"checkpoint {self.path}: is another SQLite database (tables "
                                       f"{', '.join(others)}), not a checkpoint; give a file of its own")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
        except (OSError, sqlite3.DatabaseError) as e:
            if getattr(self, "_db", None) is not None:
                self._db.close()  # so that the file can be deleted, as the message says
            raise InfluvisionError(f"checkpoint {self.path}: cannot be opened or written ({e}); delete it to "
                                   "start again") from None

    def _key(self, item: MediaItem, sha256: str) -> str:
        # Content, not modification time: archive members are re-extracted (new mtimes) on every run.
        return f"{self.settings[item.kind]}|{item.path}|{sha256}"

    def get(self, item: MediaItem, sha256: str) -> MediaEntry | None:
        """The finished entry for this file (``sha256``: its content hash), or None (also for a damaged row,
        which is then analysed again)."""
        key = self._key(item, sha256)
        try:
            row = self._db.execute("SELECT entry FROM done WHERE key=?", (key,)).fetchone()
            entry = MediaEntry.model_validate_json(row[0]) if row else None
            if entry is not None and (entry.path != item.path or entry.kind != item.kind):
                raise TypeError(f"it records {entry.kind} {entry.path!r}")
            return entry
        except (sqlite3.DatabaseError, ValidationError, TypeError) as e:
            log.warning("checkpoint %s: the entry of %s is damaged (%s); analysing it again", self.path,
                        item.path, str(e).splitlines()[0])
            return None

    def put(self, item: MediaItem, entry: MediaEntry, sha256: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?)",
                         (self._key(item, sha256), entry.model_dump_json()))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0])
