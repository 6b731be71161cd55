"""Resumable runs: finished media entries are recorded in a small SQLite file as they complete.

A rerun of ``track(..., checkpoint=FILE)`` over the same sources and settings takes finished media from
the file instead of analysing them again. An entry is reused only if the file's content is unchanged, the
settings (embedder, thresholds, sampling, version) are identical and the gallery registers the same people,
brands and references (a person removed since must not be named from an old result).

A video is also recorded while it is analysed, batch by batch (:class:`VideoProgress`: the faces found in each
batch of frames, the logos of each batch searched), so that a run stopped part-way through a long video goes
on from where it stopped: the rerun decodes the video again but analyses only the frames not yet recorded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sqlite3
from pathlib import Path

import numpy as np
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
                            if r[0] not in ("done", "partial"))
            if others:  # e.g. the gallery given as the checkpoint: never write into it
                self._db.close()
                raise InfluvisionError(f"checkpoint {self.path}: is another SQLite database (tables "
                                       f"{', '.join(others)}), not a checkpoint; give a file of its own")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS done (key TEXT PRIMARY KEY, entry TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS partial (key TEXT NOT NULL, stage TEXT NOT NULL, "
                             "seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, stage, seq))")
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
        key = self._key(item, sha256)
        try:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?)", (key, entry.model_dump_json()))
            self._db.execute("DELETE FROM partial WHERE key=?", (key,))  # the finished entry replaces them
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def progress(self, item: MediaItem, sha256: str) -> VideoProgress:
        """What is recorded of this video's analysis so far (see :class:`VideoProgress`)."""
        return VideoProgress(self, self._key(item, sha256), item.path)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._db.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0])


class VideoProgress:
    """The batches of one video analysed so far, each a few named numpy arrays, by stage (``"faces"``,
    ``"logos"``) and batch number. Stored as ``.npz`` bytes without pickles; a row that cannot be read, or that
    belongs to other frames than the batch decoded now (:meth:`get` compares their times), is analysed again.
    """

    def __init__(self, ckpt: Checkpoint, key: str, path: str):
        self._db, self.key, self.path, self.ckpt_path = ckpt._db, key, path, ckpt.path
        self.resumed = 0  # batches taken from the checkpoint in this run

    def get(self, stage: str, seq: int, pts_s: np.ndarray) -> dict[str, np.ndarray] | None:
        """The arrays recorded for batch ``seq`` of ``stage`` when they are of the frames at ``pts_s``, else None."""
        try:
            row = self._db.execute("SELECT data FROM partial WHERE key=? AND stage=? AND seq=?",
                                   (self.key, stage, seq)).fetchone()
            if row is None:
                return None
            with np.load(io.BytesIO(row[0]), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as e:  # whatever a damaged row raises (a broken zip, a text value ...): analysed again
            self.damaged(stage, seq, e)
            return None
        if not np.array_equal(arrays.get("pts_s"), pts_s):
            log.warning("checkpoint %s: batch %d of %s was recorded for other frames; analysing it again",
                        self.ckpt_path, seq, self.path)
            return None
        self.resumed += 1
        return arrays

    def damaged(self, stage: str, seq: int, error: BaseException) -> None:
        """Say that batch ``seq`` of ``stage`` could not be used (it is analysed again and its row replaced)."""
        log.warning("checkpoint %s: batch %d of %s (%s) is damaged (%s: %s); analysing it again", self.ckpt_path,
                    seq, self.path, stage, type(error).__name__, (str(error).splitlines() or [""])[0])

    def put(self, stage: str, seq: int, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._db.execute("INSERT OR REPLACE INTO partial VALUES (?, ?, ?, ?)", (self.key, stage, seq, buf.getvalue()))
