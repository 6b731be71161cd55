"""The gallery: a SQLite file of registered people and brands with their reference images.

Reference images are stored as bytes (with their content hash and source path), so embeddings can be
recomputed whenever the embedder changes, even after the original files moved. Embeddings are stored per
embedder name as float32 blobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .decode.images import load_image
from .errors import GalleryError, InfluvisionError, MediaError, UnknownModelError
from .faces.embed import EMBEDDERS, resolve_device
from .faces.resolution import RESOLUTION_LEVELS
from .files import MAX_REFERENCE_BYTES, read_regular_file
from .match import GalleryIndex

if TYPE_CHECKING:
    from .faces.pipeline import FacePipeline
    from .logos.references import LogoReference

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION = "influvision-gallery"
NAME_RE = re.compile(r"^[\w][\w .'\-]{0,79}$", re.UNICODE)

# A reference photo must show one clear face: a second face at least this share of the largest face's
# area makes the photo ambiguous (which one is the person?), so it is refused rather than guessed.
COMPARABLE_FACE_AREA = 0.35
# Reference faces smaller than this (height, px) give unreliable embeddings.
MIN_REFERENCE_FACE_PX = 40.0
# A new reference farther than this from every existing reference of the same person is suspicious
# (wrong person in the photo?): it is still added, with a warning in its status.
INCONSISTENT_REFERENCE_DISTANCE = 0.62

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('person', 'brand')),
    name TEXT NOT NULL, created REAL NOT NULL, UNIQUE (kind, name));
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY, subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL, source_path TEXT NOT NULL, data BLOB NOT NULL, added REAL NOT NULL,
    UNIQUE (subject_id, sha256));
CREATE TABLE IF NOT EXISTS embeddings (
    ref_id INTEGER NOT NULL REFERENCES refs(id) ON DELETE CASCADE, embedder TEXT NOT NULL,
    dim INTEGER NOT NULL, vector BLOB NOT NULL, box TEXT NOT NULL, face_px REAL NOT NULL,
    PRIMARY KEY (ref_id, embedder));
"""
# The trained logo detector (at most one). Added without a schema bump: opening a gallery creates it.
_DETECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS logo_detector (
    id INTEGER PRIMARY KEY CHECK (id = 1), brands TEXT NOT NULL, refs_key TEXT NOT NULL,
    sha256 TEXT NOT NULL, data BLOB NOT NULL, metrics TEXT NOT NULL, use INTEGER NOT NULL, created REAL NOT NULL);
"""


@dataclass(frozen=True)
class _RefFace:
    vector: np.ndarray     # (D,) full-resolution embedding
    variants: np.ndarray   # (L, D) embeddings at RESOLUTION_LEVELS
    box: list[float]
    face_px: float


_Store = Callable[[int | None], None]  # stores what an accepted reference needs beside its image row
_Accept = Callable[[int, bytes, str], "ReferenceStatus | tuple[_Store, str]"]  # (subject, bytes, path)


def _variant_key(embedder: str, level: float) -> str:
    return f"{embedder}@{level:g}"


@dataclass(frozen=True)
class StoredDetector:
    """A trained logo detector as stored with the gallery (see :mod:`influvision.logos.trained`).

    Attributes:
        brands: class names in class order; equal to the gallery's registered brands when it was stored.
        data: the model blob (safetensors bytes); ``sha256`` is its recorded digest, checked on loading.
        sha256: hex digest recorded when the model was stored.
        metrics: validation numbers recorded by ``influvision logos train``.
        use: whether it measured better than the matcher, so tracking should use it.
        created: when it was stored (seconds since the epoch).
    """

    brands: list[str]
    data: bytes
    sha256: str
    metrics: dict
    use: bool
    created: float


@dataclass(frozen=True)
class ReferenceStatus:
    """What happened to one reference image given to :meth:`Gallery.add_person` or ``add_brand``."""

    path: str
    status: Literal["added", "already_registered", "no_face", "several_faces", "face_too_small", "error"]
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("added", "already_registered")


def _reference_paths(kind: str, images: object) -> list[str]:
    """Reference image paths: one path, a folder (its image files, sorted) or an iterable of paths.

    Raises:
        TypeError: images given as anything but paths (bytes, arrays of pixels, images in memory, None).
    """
    from .decode.images import PHOTO_EXTENSIONS
    from .sources import path_list

    suffixes = PHOTO_EXTENSIONS | ({".svg"} if kind == "brand" else set())
    paths: list[str] = []
    for item in path_list(images, f"add_{kind} takes reference image paths: images"):
        p = Path(item).expanduser()
        if p.is_dir():
            paths += sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        else:
            paths.append(str(p) if item.startswith("~") else item)
    return paths


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of a file, None when it is gone: what changes when it is written."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def validate_name(name: str) -> str:
    """Return the name stripped and in Unicode's composed form (NFC: an accent typed as a separate mark, as some
    systems store it, is the same name), or raise GalleryError saying what a valid name looks like."""
    if not isinstance(name, str) or not NAME_RE.match(unicodedata.normalize("NFC", name.strip())):
        raise GalleryError(
            f"invalid name {name!r}: use 1-80 letters, digits, spaces, '_', '-', '.' or \"'\", "
            "starting with a letter or digit (e.g. 'rick_astley')"
        )
    return unicodedata.normalize("NFC", name.strip())


def _name_key(name: str) -> str:
    """What two names must not share: letter case and compatibility forms (full-width letters) aside."""
    return unicodedata.normalize("NFKC", name).casefold()


class Gallery:
    """Registered people and brands, persisted in one SQLite file (created if missing).

    Args:
        path: the gallery file, e.g. ``"event.db"``.
        embedder: embedder name used for people's reference embeddings.
        device: where reference photos are analysed (``"auto"``: CUDA when present).
    """

    def __init__(self, path: str | Path, *, embedder: str = "dlib-resnet-v1", device: str = "auto"):
        self.path = Path(path).expanduser()
        if embedder not in EMBEDDERS:  # said now, not at the first photo
            raise UnknownModelError(embedder, sorted(EMBEDDERS))
        self.embedder_name = embedder
        resolve_device(device)  # an unknown or absent device is said now, before anything is written
        self.device = device
        self._pipeline: FacePipeline | None = None
        self._outlines: dict[str, tuple[np.ndarray, float] | None] = {}  # brand references' outlines, by sha256
        if not self.path.parent.is_dir():
            raise GalleryError(f"{self.path}: the folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise GalleryError(f"{self.path} is a folder, not a gallery file")
        if not self.path.exists() and not os.access(self.path.parent, os.W_OK):
            raise GalleryError(f"cannot create the gallery {self.path}: the folder {self.path.parent} is not writable")
        # A gallery in a folder we cannot write to (a shared, read-only copy) is read as it is: SQLite would
        # otherwise try to create its journal files beside it and fail.
        self.read_only = self.path.is_file() and not (os.access(self.path, os.W_OK)
                                                     and os.access(self.path.parent, os.W_OK))
        self._snapshot: tuple[int, int, int] | None = None
        try:
            if self.read_only:
                # With a -wal file beside it, changes may still be there (a writer has it open): read them with
                # mode=ro; without one nothing is pending and the file can be read as it is.
                pending = Path(f"{self.path}-wal").exists()
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{'mode=ro' if pending else 'immutable=1'}",
                                           uri=True, isolation_level=None, check_same_thread=False)
                # Read as a snapshot (SQLite is told the file does not change): a change by its owner is noticed
                # when the gallery is next read for a run, never read half-way.
                self._snapshot = None if pending else _file_signature(self.path)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{self.path} is not an influvision gallery (not a SQLite file: {e})") from e
        try:
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            check = str(e)
        if check != "ok":
            raise GalleryError(f"{self.path} is damaged (SQLite's check: {check}); restore it from a backup")
        if tables and "meta" not in tables:
            raise GalleryError(f"{self.path} is a SQLite file but not an influvision gallery")
        if not tables:
            tables = self._create()
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{self.path} is damaged or not an influvision gallery ({e})") from None
        if meta.get("application") != APPLICATION:
            raise GalleryError(f"{self.path} is a SQLite file but not an influvision gallery")
        missing = {"subjects", "refs", "embeddings"} - tables if tables else set()
        if missing:
            raise GalleryError(f"{self.path} is damaged or not an influvision gallery (no table "
                               f"{', '.join(sorted(missing))})")
        try:
            version = int(meta.get("schema_version", 0))
        except ValueError:
            raise GalleryError(f"{self.path} is damaged: its schema version {meta['schema_version']!r} is not a "
                               "number") from None
        if version > SCHEMA_VERSION:
            raise GalleryError(f"{self.path} was written by a newer influvision (schema "
                               f"{meta['schema_version']}); upgrade influvision to read it")
        if "logo_detector" not in tables:
            try:
                self._db.executescript(_DETECTOR_SCHEMA)
            except sqlite3.OperationalError as e:  # a read-only gallery made before trained logo detectors
                log.debug("%s: no logo detector table and cannot add one (%s)", self.path, e)

    def _create(self) -> set[str]:
        """Write the schema of a new gallery in one transaction (another process may be creating the same file:
        it waits, then finds the tables); returns the tables."""
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as e:
            raise GalleryError(f"cannot create the gallery {self.path}: {e} (is the folder writable?)") from None
        with self._immediate():
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                     [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))])
                tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return tables

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """A write transaction that takes the file's write lock at once (other processes wait for it)."""
        self._writable()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _check_snapshot(self) -> None:
        if self._snapshot is not None and _file_signature(self.path) != self._snapshot:
            raise GalleryError(f"{self.path} changed on disk since it was opened read-only (someone registered or "
                               "removed somebody): open it again to read the new contents")

    def _writable(self) -> None:
        if self.read_only:
            raise GalleryError(f"{self.path} is read-only (the file or its folder cannot be written to): registering "
                               "or removing needs a writable copy")

    # ---- people -----------------------------------------------------------------------------------------

    def add_person(self, name: str, images: str | Path | Sequence[str | Path]) -> list[ReferenceStatus]:
        """Register reference photos of a person; returns one status per image.

        Each photo must show one clear face (the largest, with no other face of comparable size).
        Photos with no face, several comparable faces or a face under ``MIN_REFERENCE_FACE_PX`` are
        reported back and not used. Adding a photo again is a no-op (``already_registered``).
        """

        def accept(subject: int, data: bytes, path: str) -> ReferenceStatus | tuple[_Store, str]:
            try:
                face = self._reference_face(data, path)
            except MediaError as e:
                return ReferenceStatus(path, "error", str(e))
            if isinstance(face, ReferenceStatus):
                return face
            return (lambda ref_id: self._store_embeddings(ref_id, face)), self._reference_warnings(subject, face.vector)

        return self._add_references("person", name, images, accept)

    def _add_references(self, kind: str, name: str, images: str | Path | Sequence[str | Path],
                        accept: _Accept) -> list[ReferenceStatus]:
        """Read, hash and check each reference image (``accept``), store the accepted ones; a subject left
        with no reference at all is not registered."""
        name = validate_name(name)
        paths = _reference_paths(kind, images)
        if not paths:
            raise GalleryError(f"add_{kind}({name!r}) needs at least one reference image")
        self._writable()
        subject = self._subject_id(kind, name, create=True)
        statuses: list[ReferenceStatus] = []
        try:
            for p in paths:
                status, subject = self._add_reference(kind, name, subject, str(p), accept)
                statuses.append(status)
        finally:  # also when a reference raised: no subject is left without references
            with self._immediate():  # checked and deleted at once: another process may be adding to it
                gone = self._db.execute("DELETE FROM subjects WHERE id=? AND NOT EXISTS (SELECT 1 FROM refs WHERE "
                                        "subject_id=?)", (subject, subject)).rowcount
            if gone:
                log.warning("no usable reference for %s: %s not registered", name, kind)
        return statuses

    def _add_reference(self, kind: str, name: str, subject: int, path: str, accept: _Accept,
                       ) -> tuple[ReferenceStatus, int]:
        """The status of one reference and the subject's id (a new one when another process removed the subject
        meanwhile: its own registration of the name found no usable reference)."""
        status = self._check_reference(subject, path, accept)
        if not isinstance(status, tuple):
            return status, subject
        sha, data, store, message = status
        with self._immediate():  # the reference and its embeddings, or neither
            if not self._db.execute("SELECT 1 FROM subjects WHERE id=?", (subject,)).fetchone():
                subject = self._insert_subject(kind, name)
            cur = self._db.execute("INSERT OR IGNORE INTO refs (subject_id, sha256, source_path, data, added) "
                                   "VALUES (?, ?, ?, ?, ?)", (subject, sha, path, data, time.time()))
            if cur.rowcount == 0:  # another process registered the same file meanwhile
                return ReferenceStatus(path, "already_registered"), subject
            store(cur.lastrowid)
        return ReferenceStatus(path, "added", message), subject

    def _check_reference(self, subject: int, path: str, accept: _Accept,
                         ) -> ReferenceStatus | tuple[str, bytes, _Store, str]:
        """A reference's refusal, or what storing it needs: its sha256, bytes, embedding writer and warnings."""
        try:
            data = read_regular_file(path, MAX_REFERENCE_BYTES)
        except OSError as e:
            return ReferenceStatus(path, "error", f"{path}: cannot read ({e.strerror or e})")
        sha = hashlib.sha256(data).hexdigest()
        if self._db.execute("SELECT 1 FROM refs WHERE subject_id=? AND sha256=?", (subject, sha)).fetchone():
            return ReferenceStatus(path, "already_registered")
        other = self._db.execute(
            "SELECT s.name FROM refs r JOIN subjects s ON s.id = r.subject_id WHERE r.sha256=? AND s.kind = "
            "(SELECT kind FROM subjects WHERE id=?) AND s.id != ?", (sha, subject, subject)).fetchone()
        if other:  # the same picture cannot show two people (or two brands' marks): a slip of the hand
            return ReferenceStatus(path, "error", f"{path}: this file is already a reference of {other[0]!r}; a "
                                   "reference can stand for one name only")
        verdict = accept(subject, data, path)
        if isinstance(verdict, ReferenceStatus):
            return verdict
        store, message = verdict
        return sha, data, store, message

    def _reference_face(self, data: bytes, path: str) -> _RefFace | ReferenceStatus:
        image = load_image(data, name=path)
        faces = self.pipeline([image.pixels], keep_chips=True)
        if len(faces) == 0:
            return ReferenceStatus(path, "no_face", f"{path}: no face found")
        boxes = faces.boxes.cpu()
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = torch.argsort(area, descending=True)
        if len(order) > 1 and float(area[order[1]]) >= COMPARABLE_FACE_AREA * float(area[order[0]]):
            return ReferenceStatus(path, "several_faces",
                                   f"{path}: {len(order)} faces of comparable size; crop the photo to the person")
        i = int(order[0])
        face_px = float(faces.columns["size_px"][i])
        if face_px < MIN_REFERENCE_FACE_PX:
            return ReferenceStatus(path, "face_too_small",
                                   f"{path}: the face is {face_px:.0f} px high; references need "
                                   f"at least {MIN_REFERENCE_FACE_PX:.0f} px")
        vector = faces.columns["embedding"][i].float().cpu().numpy()
        variants = self.pipeline.embed_resolution_variants(faces.columns["chip"][i:i + 1])[:, 0].float().cpu().numpy()
        return _RefFace(vector, variants, [round(float(v), 1) for v in boxes[i]], face_px)

    def _reference_warnings(self, subject: int, vector: np.ndarray) -> str:
        """Warnings about a new reference face, from its distances to every registered person's references:
        far from the person's own (the wrong person in the photo?), or within the match threshold of another
        person's (the same person under two names, or a lookalike: faces close to both will stay unknown)."""
        rows = self._db.execute(
            "SELECT r.subject_id, s.name, r.source_path, e.dim, e.vector FROM embeddings e "
            "JOIN refs r ON r.id = e.ref_id JOIN subjects s ON s.id = r.subject_id "
            "WHERE s.kind='person' AND e.embedder=?", (self.embedder_name,)).fetchall()
        if not rows:
            return ""
        dist = np.linalg.norm(self._vectors([r[1:] for r in rows], len(vector)) - vector, axis=1)
        own = np.array([r[0] == subject for r in rows])
        warnings = []
        if own.any() and float(dist[own].min()) > INCONSISTENT_REFERENCE_DISTANCE:
            warnings.append(f"warning: this face is {float(dist[own].min()):.2f} from the person's other references "
                            f"(same person is usually < 0.5): check it shows the same person")
        threshold = self.pipeline.embedder.threshold
        if (~own).any():
            k = int(np.flatnonzero(~own)[dist[~own].argmin()])
            if dist[k] <= threshold:
                warnings.append(f"warning: this face is {dist[k]:.2f} from {rows[k][1]}'s reference {rows[k][2]} "
                                f"(a match is <= {threshold}): the same person under two names, or a lookalike? "
                                "Faces close to both will stay unknown")
        return "; ".join(warnings)

    def _store_embeddings(self, ref_id: int | None, face: _RefFace) -> None:
        """The full-resolution embedding under the embedder's name, each resolution variant under
        ``name@level`` (e.g. ``dlib-resnet-v1@32``)."""
        keys = [self.embedder_name] + [_variant_key(self.embedder_name, lv) for lv in RESOLUTION_LEVELS]
        vectors = [face.vector, *face.variants]
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?)",
            [(ref_id, key, int(v.shape[0]), v.astype(np.float32).tobytes(), ",".join(map(str, face.box)),
              face.face_px) for key, v in zip(keys, vectors, strict=True)])

    def remove_person(self, name: str) -> None:
        self._remove("person", name)

    def people(self) -> list[str]:
        return self._names("person")

    def references(self, name: str) -> list[str]:
        """Source paths of a person's or brand's reference images."""
        rows = self._db.execute("SELECT r.source_path FROM refs r JOIN subjects s ON s.id = r.subject_id "
                                "WHERE s.name=? ORDER BY r.id", (name,))
        return [r[0] for r in rows]

    def index(self, device: str | torch.device = "cpu") -> GalleryIndex:
        """All people's reference embeddings for the gallery's embedder, computed where missing."""
        self._check_snapshot()
        self._refresh_embeddings()
        def rows_for(key: str) -> list[tuple[str, str, int, bytes]]:
            return self._db.execute(
                "SELECT s.name, r.source_path, e.dim, e.vector FROM subjects s JOIN refs r ON r.subject_id = s.id "
                "JOIN embeddings e ON e.ref_id = r.id WHERE s.kind='person' AND e.embedder=? ORDER BY s.name, r.id",
                (key,)).fetchall()

        spec = EMBEDDERS.get(self.embedder_name)

        def stack(rows: list[tuple[str, str, int, bytes]]) -> torch.Tensor:
            return torch.from_numpy(self._vectors(rows, spec.dim if spec is not None else int(rows[0][2])))

        rows = rows_for(self.embedder_name)
        if not rows:
            return GalleryIndex.empty(device=device)
        names = sorted({r[0] for r in rows})
        pos = {n: i for i, n in enumerate(names)}
        owner = torch.tensor([pos[r[0]] for r in rows], dtype=torch.long)
        variant_rows = [rows_for(_variant_key(self.embedder_name, lv)) for lv in RESOLUTION_LEVELS]
        variants = torch.stack([stack(v) for v in variant_rows]).to(device) \
            if all(len(v) == len(rows) for v in variant_rows) else None
        return GalleryIndex(names, stack(rows).to(device), owner.to(device), variants)

    def _vectors(self, rows: Sequence[tuple[str, str, int, bytes]], dim: int) -> np.ndarray:
        """(N, dim) float32 of stored embeddings given as (person, reference path, dim, blob) rows.

        Raises:
            GalleryError: a blob is not ``dim`` finite float32 values (the file was damaged or edited).
        """
        out = np.empty((len(rows), dim), dtype=np.float32)
        for k, (name, path, d, blob) in enumerate(rows):
            v = np.frombuffer(blob, dtype=np.float32) if isinstance(blob, bytes) and len(blob) == 4 * dim else None
            if v is None or d != dim or not np.isfinite(v).all():
                raise GalleryError(f"{self.path} is damaged: the stored embedding of {name}'s reference {path} is "
                                   f"not {dim} numbers; remove the person and add the references again")
            out[k] = v
        return out

    def _refresh_embeddings(self) -> None:
        """Embed people's references that have no embedding for the current embedder (it changed)."""
        keys = [self.embedder_name] + [_variant_key(self.embedder_name, lv) for lv in RESOLUTION_LEVELS]
        missing = self._db.execute(
            "SELECT r.id, r.source_path, r.data FROM refs r JOIN subjects s ON s.id = r.subject_id "
            f"WHERE s.kind='person' AND (SELECT COUNT(*) FROM embeddings e WHERE e.ref_id = r.id "
            f"AND e.embedder IN ({','.join('?' * len(keys))})) < ?", (*keys, len(keys))).fetchall()
        if missing and self.read_only:
            raise GalleryError(f"{self.path} is read-only and {len(missing)} of its references have no {self.embedder_name} "
                               "embeddings yet (registered with another embedder or version): open a writable copy "
                               "once (e.g. influvision gallery list) to compute them")
        for ref_id, path, data in missing:
            face = self._reference_face(data, path)
            if isinstance(face, ReferenceStatus):
                log.warning("reference %s gives no usable face with %s: %s", path, self.embedder_name, face.message)
                continue
            with self._immediate():
                self._store_embeddings(ref_id, face)

    # ---- brands -----------------------------------------------------------------------------------------

    def add_brand(self, name: str, images: str | Path | Sequence[str | Path]) -> list[ReferenceStatus]:
        """Register reference images of a brand's logo (PNG with transparency, JPG crops, SVG)."""
        from .logos.references import BRAND_NAME, load_reference

        if not isinstance(name, str) or not BRAND_NAME.match(name.strip()):
            raise GalleryError(f"invalid brand name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', "
                               "starting with a letter or digit (e.g. 'acme')")

        def accept(subject: int, data: bytes, path: str) -> ReferenceStatus | tuple[_Store, str]:
            try:
                ref = load_reference(validate_name(name), data)
            except InfluvisionError as e:
                return ReferenceStatus(path, "error", f"{path}: {e}")
            return (lambda ref_id: None), "; ".join(
                w for w in (ref.background_warning, ref.texture_warning, self._mark_warning(subject, ref)) if w)

        return self._add_references("brand", name, images, accept)

    def _mark_warning(self, subject: int, ref: LogoReference) -> str:
        """A warning when another brand has a reference of the same mark (:data:`SAME_MARK_IOU`): a photo of it
        could be counted for either brand, as faces of one person under two names would."""
        from .logos.references import SAME_MARK_IOU, LogoReferenceError, load_reference, mark_likeness

        mine = ref.outline
        best: tuple[float, str, str] = (0.0, "", "")
        for ref_id, sha, other, path in self._db.execute(
                "SELECT r.id, r.sha256, s.name, r.source_path FROM refs r JOIN subjects s ON s.id = r.subject_id "
                "WHERE s.kind='brand' AND s.id != ?", (subject,)).fetchall():
            if sha not in self._outlines:  # registering many brands in one session reads and loads each once
                (data,) = self._db.execute("SELECT data FROM refs WHERE id=?", (ref_id,)).fetchone()
                try:
                    self._outlines[sha] = load_reference(other, data).outline
                except LogoReferenceError:  # stored by an older version; track() says so
                    self._outlines[sha] = None
            theirs = self._outlines[sha]
            if theirs is not None:
                best = max(best, (mark_likeness(mine, theirs), other, path))
        if best[0] < SAME_MARK_IOU:
            return ""
        return (f"warning: this mark looks like {best[1]}'s reference {best[2]} (outline IoU {best[0]:.2f}): photos "
                "of it may be counted for either brand; register one mark under one name")

    def remove_brand(self, name: str) -> None:
        self._remove("brand", name)

    def brands(self) -> list[str]:
        return self._names("brand")

    def brand_images(self) -> list[tuple[str, str, bytes]]:
        """(brand, source path, image bytes) for every brand reference, in a stable order."""
        return self._db.execute(
            "SELECT s.name, r.source_path, r.data FROM subjects s JOIN refs r ON r.subject_id = s.id "
            "WHERE s.kind='brand' ORDER BY s.name, r.id").fetchall()

    def brand_references(self) -> list[LogoReference]:
        """Every brand reference, loaded for matching (in :meth:`brand_images`' order).

        Raises:
            GalleryError: a stored reference that today's checks refuse (registered by an older version): a
                brand must not silently drop out of a report.
        """
        from .logos.references import LogoReferenceError, load_reference

        refs = []
        for name, path, data in self.brand_images():
            try:
                refs.append(load_reference(name, data))
            except LogoReferenceError as e:
                raise GalleryError(f"{self.path}: the stored reference {path} of brand {name!r} can no longer be "
                                   f"used ({e}); remove the brand and register it again") from None
        return refs

    def content_key(self) -> str:
        """sha256 over what a report depends on in this gallery: every person's and brand's name and reference
        hashes, and the stored logo detector's hash and use flag. It changes whenever a subject or reference is
        added or removed or a detector is trained, so results recorded with another key are not reused.

        Raises:
            GalleryError: a read-only gallery whose file was changed since it was opened (open it again).
        """
        self._check_snapshot()
        rows = self._db.execute("SELECT s.kind, s.name, r.sha256 FROM subjects s LEFT JOIN refs r "
                                "ON r.subject_id = s.id ORDER BY s.kind, s.name, r.sha256").fetchall()
        try:
            det = self._db.execute("SELECT sha256, use FROM logo_detector WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # a read-only gallery made before trained logo detectors
            det = None
        return hashlib.sha256(json.dumps([rows, det]).encode()).hexdigest()

    # ---- trained logo detector ------------------------------------------------------------------------

    def brand_refs_key(self) -> str:
        """sha256 over every brand's name and reference hashes: changes when a brand or reference does."""
        rows = self._db.execute("SELECT s.name, r.sha256 FROM subjects s JOIN refs r ON r.subject_id = s.id "
                                "WHERE s.kind='brand' ORDER BY s.name, r.sha256").fetchall()
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def save_detector(self, data: bytes, sha256: str, *, brands: Sequence[str], metrics: dict | None = None,
                      use: bool = True, refs_key: str | None = None) -> None:
        """Store a trained logo detector, replacing any stored one.

        Args:
            data: the model blob (safetensors bytes).
            sha256: its hex digest (checked here and again on loading).
            brands: its class names; must be the gallery's registered brands.
            metrics: JSON-able validation numbers to keep beside it.
            use: whether tracking should run it beside the matcher (its boxes confirm the matcher's or add their own).
            refs_key: :meth:`brand_refs_key` when the references it was trained on were read: a brand or
                reference changed since (another process registered one during training) refuses the save.

        Raises:
            GalleryError: the brands differ from the registered ones or changed since ``refs_key``, or ``sha256``
                does not match ``data``.
        """
        registered = self.brands()
        if sorted(brands) != registered:
            raise GalleryError(f"the detector was trained for brands {sorted(brands)} but {self.path} registers "
                               f"{registered}; retrain it")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise GalleryError("the detector's data does not match the sha256 given with it")
        with self._immediate():
            now = self.brand_refs_key()
            if refs_key is not None and now != refs_key:
                raise GalleryError(f"the brands registered in {self.path} changed while the detector was trained "
                                   "(a brand or reference was added, removed or replaced); retrain it")
            self._db.execute("INSERT OR REPLACE INTO logo_detector VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                             (json.dumps(list(brands)), now, sha256, data,
                              json.dumps(metrics or {}), int(use), time.time()))

    def load_detector(self) -> StoredDetector | None:
        """The stored logo detector, or None when there is none or it is stale.

        A detector is stale when a brand or brand reference was added or removed after it was trained;
        a warning says so and that it needs retraining. The blob's sha256 is checked by its loader
        (:class:`~influvision.logos.trained.TrainedLogoDetector`).
        """
        try:
            row = self._db.execute("SELECT brands, refs_key, sha256, data, metrics, use, created FROM logo_detector "
                                   "WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # a read-only gallery made before trained logo detectors
            return None
        if row is None:
            return None
        brands, refs_key, sha, data, metrics, use, created = row
        if refs_key != self.brand_refs_key():
            log.warning("the trained logo detector in %s is stale: the registered brands changed since it was "
                        "trained (it knows %s); ignoring it. Retrain: influvision logos train --gallery %s",
                        self.path, ", ".join(json.loads(brands)), self.path)
            return None
        return StoredDetector(json.loads(brands), bytes(data), sha, json.loads(metrics), bool(use), float(created))

    # ---- plumbing ---------------------------------------------------------------------------------------

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            from .faces.pipeline import FacePipeline

            self._pipeline = FacePipeline(embedder=self.embedder_name, device=self.device)
        return self._pipeline

    @property
    def loaded_pipeline(self) -> FacePipeline | None:
        """The face pipeline if one is loaded already (None: the next use loads it)."""
        return self._pipeline

    def use_pipeline(self, pipeline: FacePipeline) -> None:
        """Share an already loaded face pipeline (same embedder) instead of loading another."""
        if pipeline.embedder.name != self.embedder_name:
            raise GalleryError(f"pipeline embedder {pipeline.embedder.name!r} differs from the gallery's "
                               f"{self.embedder_name!r}")
        self._pipeline = pipeline

    def _subject_id(self, kind: str, name: str, *, create: bool) -> int:
        row = self._db.execute("SELECT id FROM subjects WHERE kind=? AND name=?", (kind, name)).fetchone()
        if row:
            return int(row[0])
        if not create:
            known = self._names(kind)
            raise GalleryError(f"no {kind} named {name!r} in {self.path}; registered: {', '.join(known) or 'none'}")
        # Checked and inserted under the write lock: two processes registering one name (or a person and a brand
        # of one name) at once cannot both pass the check.
        with self._immediate():
            row = self._db.execute("SELECT id FROM subjects WHERE kind=? AND name=?", (kind, name)).fetchone()
            if row:
                return int(row[0])
            for other_kind, other_name in self._db.execute("SELECT kind, name FROM subjects").fetchall():
                if _name_key(other_name) != _name_key(name):
                    continue
                if other_kind != kind:
                    raise GalleryError(f"{name!r} is already registered as a {other_kind}; choose another name")
                raise GalleryError(f"{name!r} differs from the registered {kind} {other_name!r} only in letter case "
                                   f"or width: use {other_name!r} to add references, or choose another name")
            return self._insert_subject(kind, name)

    def _insert_subject(self, kind: str, name: str) -> int:
        """A new subject's id (inside a write transaction, after the name's checks)."""
        cur = self._db.execute("INSERT INTO subjects (kind, name, created) VALUES (?, ?, ?)", (kind, name, time.time()))
        return int(cur.lastrowid or 0)

    def _remove(self, kind: str, name: str) -> None:
        subject = self._subject_id(kind, validate_name(name), create=False)
        with self._immediate():
            self._db.execute("DELETE FROM subjects WHERE id=?", (subject,))

    def _names(self, kind: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM subjects WHERE kind=? ORDER BY name", (kind,))]

    def close(self) -> None:
        """Close the file; using the gallery afterwards raises :class:`GalleryError`."""
        if not isinstance(self._db, _Closed):
            self._db.close()
            self._db = _Closed(self.path)  # type: ignore[assignment]

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if isinstance(self._db, _Closed):
            return f"Gallery({str(self.path)!r}, closed)"
        return f"Gallery({str(self.path)!r}, people={len(self.people())}, brands={len(self.brands())})"


class _Closed:
    """Stands in for the connection of a closed gallery: any use says so."""

    def __init__(self, path: Path):
        self.path = path

    def __getattr__(self, name: str) -> object:
        raise GalleryError(f"the gallery {self.path} is closed; open it again with Gallery(path)")
