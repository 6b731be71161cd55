"""What the user points at -> a deterministic list of media files, plus a reason for everything left out.

:func:`collect_media` accepts files, folders (walked recursively, sorted), glob patterns (``"photos/*.jpg"``,
``"event/**/*.jpg"``), zip and tar (.tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz) archives, or a list of
any of these. Nothing stops the run: every input that cannot be used becomes a :class:`SkippedInput` with a
message naming it and the problem.

Archive members are never written where their names point. Each wanted member is copied into a private
temporary folder owned by the :class:`MediaSet` under a generated name (``000003.jpg``); its archive name is
kept only for display (``"event.zip!/day1/a.jpg"``). Members with absolute paths or ``..`` components,
links, device files, nested archives and password-protected members are skipped with a reason, the rest go
on. Against archive bombs: at most ``max_extract_bytes`` (default 16 GiB) are extracted per call, an archive
may inflate to at most ``max_compression_ratio`` times its own size (default 100; photos and videos barely
compress) and a zip member larger than 1 MiB compressed more than that is refused, a member that inflates
beyond its declared size is refused, and an archive may list at most ``max_archive_members`` entries
(default 100,000). The archive's format is read from its first bytes where they say (a zip named .tar.gz),
else from its name; a file whose name says one kind of media and whose content another (a video saved as
.jpg) is read as its content says.

Inside folders and archives, files that are clearly not media (.txt, .json, .xmp sidecars, .DS_Store ...)
are passed over without a reason each (only counted, :attr:`MediaSet.ignored`); other unknown types are skipped with a reason. A file named without a media extension
is still taken when its first bytes are a photo, video or archive signature.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import shutil
import stat
import tarfile
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .archives import (
    ARCHIVE_SUFFIXES,
    DamagedArchive,
    Member,
    TooLarge,
    copy_limited,
    open_members,
    read_head,
    safe_suffix,
    unsafe_member_name,
)
from .decode.images import PHOTO_EXTENSIONS, VIDEO_EXTENSIONS, has_photo_signature
from .errors import MediaError

logger = logging.getLogger(__name__)

__all__ = ["MediaItem", "MediaSet", "SkippedInput", "collect_media", "path_list"]

DEFAULT_MAX_EXTRACT_BYTES = 16 * 2**30
DEFAULT_MAX_COMPRESSION_RATIO = 100.0
DEFAULT_MAX_ARCHIVE_MEMBERS = 100_000

# Clearly not media: ignored without a word inside folders and archives (still reported when named alone).
_NON_MEDIA_SUFFIXES = frozenset({
    ".txt", ".json", ".md", ".csv", ".tsv", ".xml", ".html", ".htm", ".log", ".yaml", ".yml", ".ini", ".cfg",
    ".toml", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".rtf", ".odt", ".nfo", ".url",
    ".lnk", ".db", ".sqlite", ".xmp", ".aae", ".thm", ".lrv", ".srt", ".vtt", ".py", ".sh", ".js", ".css",
    ".ds_store", ".pp3", ".dop", ".mp3", ".wav", ".m4a",
    ".aac", ".flac", ".ogg", ".sha256", ".md5", ".sfv", ".par2", ".torrent", ".exe", ".dll", ".bin", ".tmp",
    ".part", ".crdownload", ".bak", ".ckpt", ".sqlite3",
})
_NON_MEDIA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", ".picasa.ini", "icon\r"})
# SQLite's side files, e.g. of a gallery or checkpoint kept beside the photos (event.db-wal, run.ckpt-shm).
# Answers of _Collector._refusal for members that are counted, not listed as skipped.
_HIDDEN = "hidden"
_IGNORED = "ignored"
_SIDE_FILE_ENDINGS = ("-wal", "-shm", "-journal")


def _non_media(name: str) -> bool:
    """Whether a file name is clearly not media: passed over in folders and archives, only counted."""
    lower = name.lower()
    return Path(lower).suffix in _NON_MEDIA_SUFFIXES or lower.endswith(_SIDE_FILE_ENDINGS)
_RAW_SUFFIXES = frozenset({".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf",
                           ".orf", ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw"})

Kind = Literal["photo", "video"]


@dataclass(frozen=True)
class MediaItem:
    """One photo or video to analyse.

    Attributes:
        path: what the user sees: the path as given (``"photos/a.jpg"``), or ``"event.zip!/day1/a.jpg"`` for
            an archive member.
        local_path: an absolute path of a readable file with the content (a temp copy for archive members;
            valid until the owning :class:`MediaSet` is closed).
        kind: ``"photo"`` or ``"video"`` (by extension, else by content signature).
    """

    path: str
    local_path: Path
    kind: Kind


@dataclass(frozen=True)
class SkippedInput:
    """An input left out. ``error`` is the full message, ``"<path>: <problem>"``, like ``str(MediaError)``."""

    path: str
    error: str

    @property
    def problem(self) -> str:
        """The reason alone, without the path."""
        prefix = f"{self.path}: "
        return self.error[len(prefix):] if self.error.startswith(prefix) else self.error

    def __str__(self) -> str:
        return self.error


class MediaSet:
    """The media found by :func:`collect_media`; a context manager that deletes extracted archive members.

    Attributes:
        items: photos and videos in a deterministic order (inputs in the order given; folders sorted by
            name, depth first; archive members sorted by name). Each file appears once.
        skipped: inputs that cannot be used, with reasons, in the order found.
        repeats: (item, name of the first item) for photos and videos reached again under another name (a
            link, a hard link, another spelling of the path): not analysed again, reported as duplicates.
        ignored: files inside folders and archives passed over without a word because they are clearly
            not media (sidecars, documents, desktop litter, ``__MACOSX`` resource forks); counted so a report
            can say how many.
        hidden: photos, videos and archives (by name) inside hidden folders (a name starting with ``.``:
            ``.thumbnails``, ``.Trash-1000``, ``.picasaoriginals``) of a folder or archive: not analysed, since
            such folders hold thumbnails, deleted and superseded copies, but counted so a report can say so;
            a hidden folder given as a source of its own is searched.
        temp_dir: the private folder holding archive members, or None when no archive was opened.
    """

    def __init__(self) -> None:
        self.items: list[MediaItem] = []
        self.skipped: list[SkippedInput] = []
        self.repeats: list[tuple[MediaItem, str]] = []
        self.ignored = 0
        self.hidden = 0
        self.temp_dir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def photos(self) -> list[MediaItem]:
        return [i for i in self.items if i.kind == "photo"]

    @property
    def videos(self) -> list[MediaItem]:
        return [i for i in self.items if i.kind == "video"]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[MediaItem]:
        return iter(self.items)

    def __enter__(self) -> MediaSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the temp folder of archive members (idempotent). Items from archives become unreadable."""
        if self._finalizer is not None:
            self._finalizer()

    def _make_temp_dir(self) -> Path:
        if self.temp_dir is None:
            _remove_abandoned_temp_dirs()
            self.temp_dir = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))  # mode 0700
            lock = _hold_lock(self.temp_dir)
            self._finalizer = weakref.finalize(self, _remove_temp_dir, self.temp_dir, lock)
        return self.temp_dir


# Extracted archive members live in <tmp>/influvision-XXXX, which holds a lock file locked for as long as its
# run lives. A run killed outright (SIGKILL, a power cut) cannot delete its folder; the next run that opens an
# archive deletes every such folder whose lock nobody holds any more (the kernel drops a dead process's locks).
_TEMP_PREFIX = "influvision-"
_LOCK_NAME = ".lock"


def _hold_lock(folder: Path) -> int | None:
    """An open file descriptor holding an exclusive lock on ``folder``'s lock file (None where file locks are
    not available). The lock is taken before the file gets its name, so no other run sees it unlocked."""
    try:
        import fcntl
    except ImportError:  # Windows: folders of killed runs stay
        return None
    fd = os.open(folder / f"{_LOCK_NAME}.new", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(folder / f"{_LOCK_NAME}.new", folder / _LOCK_NAME)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_temp_dir(folder: Path, lock: int | None) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if lock is not None:
        os.close(lock)


def _remove_abandoned_temp_dirs() -> None:
    """Delete the archive-member folders of earlier runs that ended without deleting them (their lock is free)."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        folders = list(Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*"))
    except OSError:
        return
    for folder in folders:
        lock_path = folder / _LOCK_NAME
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid() \
                    or not lock_path.is_file():
                continue
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: that run is alive
            os.close(fd)
            continue
        logger.info("deleting %s, left by an earlier run that was stopped", folder)
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def path_list(value: object, what: str = "sources") -> list[str]:
    """``value`` as a list of path strings: one path (``str`` or path-like) or an iterable of them (a list, a
    generator, a numpy array or pandas Series of path strings ...).

    Raises:
        TypeError: anything else (bytes, images or pixel arrays in memory, open files, numbers, nested lists),
            naming ``what``.
    """
    def refuse(thing: object) -> TypeError:
        pixels = hasattr(thing, "__array__") or hasattr(thing, "getpixel") or hasattr(thing, "read")
        hint = " (images in memory are not supported: save them as files first)" if pixels else ""
        return TypeError(f"{what} must be a path (str or pathlib.Path) or a list of paths, not "
                         f"{type(thing).__name__}{hint}")

    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    if isinstance(value, bytes | bytearray) or not hasattr(value, "__iter__") or hasattr(value, "read") \
            or hasattr(value, "getpixel"):
        raise refuse(value)
    if hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype.kind not in "UO":  # pixels, not path strings
            raise refuse(value)
        if array.ndim == 0:
            return path_list(array.item(), what)
    out = []
    for item in value:  # type: ignore[attr-defined]
        if not isinstance(item, str | os.PathLike):
            raise refuse(item)
        path = os.fspath(item)
        if not isinstance(path, str):
            raise refuse(path)
        out.append(str(path))
    return out


def collect_media(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                  recursive: bool = True, max_extract_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
                  max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
                  max_archive_members: int = DEFAULT_MAX_ARCHIVE_MEMBERS,
                  exclude: Sequence[str | os.PathLike[str]] = ()) -> MediaSet:
    """Find the photos and videos in files, folders, glob patterns and archives.

    Args:
        sources: one source or a sequence of them; each a file, a folder, a glob pattern (used when no file
            of that exact name exists; ``**`` matches folders recursively) or a zip/tar archive.
        recursive: walk sub-folders of folders (the media in hidden folders are only counted,
            :attr:`MediaSet.hidden`; ``__MACOSX`` resource forks are ignored).
        max_extract_bytes: total bytes all archives of this call may extract; members beyond it are skipped.
        max_compression_ratio: members that would take an archive's extracted bytes beyond this many times
            the archive's size, and a zip member larger than 1 MiB whose size / compressed size exceeds it, are
            refused as a possible zip bomb.
        max_archive_members: entries an archive may list; the rest are skipped.
        exclude: files and folders that are never inputs, e.g. the run's own annotated copies and checkpoint
            when they sit inside a source folder (a rerun would otherwise count the annotated photos again):
            passed over inside folders (counted in :attr:`MediaSet.ignored`), skipped with a reason when given
            as a source.

    Returns:
        A :class:`MediaSet`; use it as a context manager (``with collect_media(...) as media:``) so that
        extracted archive members are deleted. Never raises for bad inputs: they go to ``skipped``.
    """
    sources = path_list(sources)
    collector = _Collector(MediaSet(), recursive, max_extract_bytes, max_compression_ratio, max_archive_members,
                           exclude)
    try:
        for src in sources:
            collector.add_source(src)
    except BaseException:
        collector.media.close()
        raise
    media = collector.media
    # Two inputs can still be shown alike (a folder named "a.zip!" beside the archive a.zip, a name that is not
    # UTF-8 beside one spelt with its \xNN escape): each keeps a name of its own, as reports, checkpoints and
    # annotated copies are keyed by it.
    media.items = _distinct_names(media.items)
    return media


class _Collector:
    def __init__(self, media: MediaSet, recursive: bool, max_extract_bytes: int, max_ratio: float,
                 max_members: int, exclude: Iterable[str | os.PathLike[str]] = ()):
        self.media = media
        self.exclude = {os.path.realpath(os.path.expanduser(os.fspath(e))) for e in exclude}
        self.recursive = recursive
        self.budget = max_extract_bytes
        self.max_ratio = max_ratio
        self.max_members = max_members
        self.seen: dict[tuple[int, int] | str, str] = {}
        self.sources: set[str] = set()
        self.archives = 0

    # --- bookkeeping

    def skip(self, path: str, problem: str) -> None:
        path = _shown(path)
        logger.info("skipping %s: %s", path, problem)
        self.media.skipped.append(SkippedInput(path, str(MediaError(path, problem))))

    def first_time(self, p: Path, display: str, kind: str) -> bool:
        """False if this file (same device and inode, so also via links) was already collected.

        A file reached again under another name (a link, another spelling of its path) is listed in
        :attr:`MediaSet.repeats` so that the report shows it as a duplicate; the same name given twice is
        one input. An archive counts as the same only under the same name: one reached through a link is
        opened again and its members are found to be duplicates by content.
        """
        try:
            st = p.stat()
            key: tuple[int, int] | str = (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(p)
        except OSError:
            key = os.path.realpath(p)
        if kind == "archive":
            key = f"archive:{display}"
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = display
            return True
        if first != display:
            self.media.repeats.append((MediaItem(_shown(display), Path(os.path.abspath(p)), kind), _shown(first)))  # type: ignore[arg-type]
        logger.debug("%s given more than once; keeping the first", display)
        return False

    # --- sources

    def add_source(self, text: str) -> None:
        if text in self.sources:  # the same name given twice is one input, found or not
            logger.debug("%s given more than once; keeping the first", text)
            return
        self.sources.add(text)
        if not text.strip():  # Path("") is the working directory: never scan it by accident
            self.skip(repr(text), "empty path: give a file, folder, archive or pattern")
            return
        p = Path(text)
        home = os.path.expanduser(text) if text.startswith("~") else text  # '~/...' read from the home folder
        if os.path.lexists(p):
            self.add_path(p, text, explicit=True)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(home, recursive=True))
            if not matches:
                hint = " ('[...]' in a pattern stands for one of the characters inside: write '[[]' for a literal " \
                       "'[')" if "[" in text else ""
                self.skip(text, f"no files match this pattern{hint}")
            for m in matches:
                self.add_path(Path(m), m, explicit=True)
        elif "://" in text:
            self.skip(text, "not found (URLs are not read: download the files and give their paths)")
        elif home != text and os.path.lexists(home):
            self.add_path(Path(home), text, explicit=True)
        else:
            self.skip(text, "not found")

    def add_path(self, p: Path, display: str, explicit: bool) -> int:
        """Collect one path; return how many media files it held (duplicates included)."""
        if self.exclude and os.path.realpath(p) in self.exclude:  # not an input, nor a file passed over
            if explicit:
                self.skip(display, "this run's own output (its annotate_dir or checkpoint): not read as input")
            return 0
        try:
            if p.is_symlink() and not p.exists():
                self.skip(display, "broken link (its target does not exist)")
                return 0
            is_dir, is_file = p.is_dir(), p.is_file()
        except OSError as e:  # e.g. a link into a folder that cannot be searched
            reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            self.skip(display, f"cannot read the file: {reason}")
            return 0
        if is_dir:
            return self.add_folder(p, display)
        if not is_file:
            self.skip(display, "not a regular file (device, pipe or socket)")
            return 0
        return self.add_file(p, display, explicit)

    def add_file(self, p: Path, display: str, explicit: bool) -> int:
        name = p.name.lower()
        if name.startswith("._") or name in _NON_MEDIA_NAMES:  # macOS resource forks, desktop litter
            if explicit:
                self.skip(display, "not a photo or video (system file)")
            else:
                self.media.ignored += 1
            return 0
        if p.suffix.lower() in _RAW_SUFFIXES:  # before sniffing: many RAW files look like TIFF
            self.skip(display, "camera RAW photo: not supported; export it as JPEG")
            return 0
        kind = _kind_by_name(p.name)
        readable = os.access(p, os.R_OK)
        if kind is None and (readable or (not explicit and _non_media(p.name))):
            kind = self.unknown_type(p, display, explicit)
            if kind is None:
                return 0
        if not readable:  # said before sniffing, which cannot tell an unreadable file from an unknown one
            self.skip(display, "cannot read the file: permission denied")
            return 0
        kind = _content_kind(p, kind, display)
        if not self.first_time(p, display, kind):
            return 1
        if kind == "archive":
            return self.add_archive(p, display)
        self.media.items.append(MediaItem(_shown(display), Path(os.path.abspath(p)), kind))
        return 1

    def _inside(self, sub: Path, real_root: Path, display: str) -> bool:
        """Whether a sub-folder is walked: a link to a folder outside the one given is not followed."""
        if not sub.is_symlink():
            return True
        try:
            if sub.resolve().is_relative_to(real_root):
                return True
        except (OSError, RuntimeError):  # RuntimeError: a link loop (Python < 3.13)
            pass
        self.skip(display, "link to a folder outside the folder given: not followed (give its target as a "
                           "source of its own to include it)")
        return False

    def _pass_over(self, folder: Path, hidden: bool) -> None:
        """Count what a folder that is not searched holds: its media (by name) as hidden, or everything as
        ignored (``__MACOSX``)."""
        n = 0
        for _, _, files in os.walk(folder):  # links are not followed here
            n += sum(1 for f in files if not hidden or _kind_by_name(f) is not None)
        if hidden:
            self.media.hidden += n
        else:
            self.media.ignored += n

    def unknown_type(self, p: Path, display: str, explicit: bool) -> str | None:
        """Kind of a file without a media extension: by signature, else skipped (or ignored in folders)."""
        suffix = p.suffix.lower()
        sniffed = _sniff_kind(p)
        if sniffed is not None:
            logger.info("%s has no media extension but looks like a %s; using it", display, sniffed)
            return sniffed
        if explicit or not _non_media(p.name):
            what = f"'{suffix}'" if suffix else "no extension"
            self.skip(display, f"not a photo or video (unknown file type, {what})")
        else:
            self.media.ignored += 1
        return None

    def add_folder(self, root: Path, display: str) -> int:
        try:
            with os.scandir(root):
                pass
        except PermissionError:
            self.skip(display, "cannot read folder: permission denied")
            return 0
        except OSError as e:
            self.skip(display, f"cannot read folder: {e.strerror or e}")
            return 0
        found = 0
        visited: set[tuple[int, int]] = set()
        real_root = root.resolve()

        def on_error(err: OSError) -> None:
            where = _display_join(display, root, Path(err.filename)) if err.filename else display
            reason = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
            self.skip(where, f"cannot read folder: {reason}")

        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
            here = Path(dirpath)
            st = here.stat()
            if (st.st_dev, st.st_ino) in visited:  # a link loop back into the walk
                dirnames[:] = []
                continue
            visited.add((st.st_dev, st.st_ino))
            if self.recursive:
                own = {d for d in dirnames if self.exclude and os.path.realpath(here / d) in self.exclude}
                for d in own:
                    logger.info("%s: this run's own output folder; its files are not read as inputs",
                                _display_join(display, root, here / d))
                passed = {d for d in dirnames if (d.startswith(".") or d == "__MACOSX") and d not in own}
                for d in passed:
                    self._pass_over(here / d, hidden=d != "__MACOSX")
                passed |= own
                dirnames[:] = sorted(d for d in dirnames if d not in passed
                                     and self._inside(here / d, real_root, _display_join(display, root, here / d)))
            else:
                dirnames[:] = []
            for name in sorted(filenames):
                f = here / name
                found += self.add_path(f, _display_join(display, root, f), explicit=False)
        if found == 0:
            self.skip(display, "folder contains no photos or videos")
        return found

    # --- archives

    def add_archive(self, p: Path, display: str) -> int:
        dest = self.media._make_temp_dir() / f"archive{self.archives:04d}"
        self.archives += 1
        dest.mkdir()
        try:
            # Zip and tar alike may inflate at most max_ratio times the archive's size in all: many members of
            # 1 MiB or less each pass the per-member ratio test, and tar keeps no compressed size per member.
            with open_members(p, stopped=lambda problem: self._stopped(display, problem)) as members:
                found = self._extract(display, dest, members, self.max_ratio * p.stat().st_size + 2**20)
        except DamagedArchive as e:
            self.skip(display, e.problem)
            return 0
        shown = _shown(display)
        if found == 0 and not any(s.path == shown or s.path.startswith(f"{shown}!/") for s in self.media.skipped):
            self.skip(display, "archive contains no photos or videos")
        return found

    def _stopped(self, display: str, problem: str) -> None:
        """An archive that ends part-way: one entry for the one event. Where the member being extracted was cut
        off by it (skipped just before), that entry says so; otherwise the archive gets an entry of its own."""
        last = self.media.skipped[-1] if self.media.skipped else None
        if last is not None and last.path.startswith(f"{_shown(display)}!/") \
                and last.problem.startswith("damaged archive member:"):
            self.media.skipped[-1] = SkippedInput(last.path, str(MediaError(
                last.path, f"{last.problem}; the archive ends there, so nothing after this member could be read")))
            return
        self.skip(display, problem)

    def _refusal(self, m: Member, base: str, kind: str | None, inflated: int, inflate_cap: float) -> str | None:
        """Why a member is not extracted: a problem for the skipped list, :data:`_HIDDEN` or :data:`_IGNORED`
        (counted, not listed), or None to extract it."""
        problem = unsafe_member_name(m.name)
        if problem:
            return problem
        folders = m.name.replace("\\", "/").rstrip("/").rpartition("/")[0]
        if any(part.startswith(".") and part != "." for part in folders.split("/")):
            return _HIDDEN
        fmt = stat.S_IFMT(m.mode)
        if fmt == stat.S_IFLNK:
            return "link inside the archive: not followed"
        if fmt and fmt != stat.S_IFREG:
            return "device or special file inside the archive: refused"
        if base.startswith("._") or "__MACOSX/" in m.name or base.lower() in _NON_MEDIA_NAMES:
            return _IGNORED  # macOS resource forks and desktop litter
        if Path(base).suffix.lower() in _RAW_SUFFIXES:
            return "camera RAW photo: not supported; export it as JPEG"
        if kind is None and _non_media(base):
            return _IGNORED
        if kind == "archive":
            return "archive inside an archive: not opened; extract it first"
        if m.encrypted:
            return "password-protected: cannot be extracted"
        if m.size > self.budget:
            return (f"not extracted: {m.size / 2**20:.0f} MiB would exceed the extraction limit "
                    f"(max_extract_bytes, {self.budget / 2**20:.0f} MiB left)")
        if inflated + m.size > inflate_cap:
            return f"refused: the archive would inflate to more than {self.max_ratio:.0f} times its size, a possible zip bomb"
        if m.compressed_size and m.size > 2**20 and m.size / m.compressed_size > self.max_ratio:
            return (f"refused: compressed {m.size / m.compressed_size:.0f} times (limit {self.max_ratio:.0f}), "
                    "a possible zip bomb")
        return None

    def _extract(self, display: str, dest: Path, members: Iterable[Member], inflate_cap: float = math.inf) -> int:
        found = 0
        inflated = 0
        extracted: list[MediaItem] = []
        for count, m in enumerate(members):
            member = f"{display}!/{m.name}"
            if count >= self.max_members:
                self.skip(display, f"archive lists more than {self.max_members} entries; the rest are not read")
                break
            if m.is_dir:
                continue
            base = m.name.replace("\\", "/").rstrip("/").rpartition("/")[2]
            kind = _kind_by_name(base)
            problem = self._refusal(m, base, kind, inflated, inflate_cap)
            if problem == _HIDDEN:
                self.media.hidden += kind is not None  # as in a folder: media counted, not analysed
                continue
            if problem == _IGNORED:
                self.media.ignored += 1
                continue
            if problem:
                self.skip(member, problem)
                continue
            # The file name is generated: nothing in the member name reaches the file system.
            target = dest / f"{count:06d}{safe_suffix(base)}"
            try:
                written = copy_limited(m.open(), target, limit=m.size)
            except TooLarge:
                target.unlink(missing_ok=True)
                self.skip(member, "refused: inflates beyond its declared size, a possible zip bomb")
                continue
            except NotImplementedError as e:  # zipfile: a compression method Python cannot read (zstd, ...)
                target.unlink(missing_ok=True)
                self.skip(member, f"cannot be extracted: {e} (the archive is not damaged: re-pack it with the "
                                  "usual deflate compression)")
                continue
            except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, ValueError,
                    RuntimeError) as e:
                target.unlink(missing_ok=True)
                self.skip(member, f"damaged archive member: {e}")
                continue
            self.budget -= written
            inflated += written
            if kind is not None:
                kind = _content_kind(target, kind, member)
                if kind == "archive":
                    target.unlink(missing_ok=True)
                    self.skip(member, "archive inside an archive: not opened; extract it first")
                    continue
            if kind is None:  # no media extension: taken when its first bytes say what it is, like a loose file
                kind = _sniff_kind(target)
                if kind != "photo" and kind != "video":
                    target.unlink(missing_ok=True)
                    self.skip(member, "archive inside an archive: not opened; extract it first" if kind == "archive"
                              else "not a photo or video (unknown file type)")
                    continue
                logger.info("%s has no media extension but looks like a %s; using it", member, kind)
            found += 1
            extracted.append(MediaItem(_shown(member), target, kind))
        self.media.items.extend(sorted(_distinct_names(extracted), key=lambda i: i.path))
        return found


def _distinct_names(items: list[MediaItem]) -> list[MediaItem]:
    """An archive may hold several members of one name (zip appends, tar keeps every version), and two inputs
    may be shown alike: each is its own photo, so in order the second and later are shown as ``name#2``,
    ``name#3``... (a number no other item's name already takes)."""
    real = {i.path for i in items}
    seen: set[str] = set()
    out = []
    for item in items:
        path, k = item.path, 1
        while path in seen or (path != item.path and path in real):  # a real member keeps its own name
            k += 1
            path = f"{item.path}#{k}"
        seen.add(path)
        out.append(item if path == item.path else dataclasses.replace(item, path=path))
    return out


def _kind_by_name(name: str) -> Literal["photo", "video", "archive"] | None:
    lower = name.lower()
    suffix = os.path.splitext(lower)[1]
    if suffix in PHOTO_EXTENSIONS:
        return "photo"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if lower.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    return None


def _content_kind(p: Path, kind: Literal["photo", "video", "archive"], shown: str
                  ) -> Literal["photo", "video", "archive"]:
    """The kind a file's content says where its name says another (a video or zip saved as .jpg, a JPEG saved
    as .mp4): the content wins. Only unambiguous signatures count; an unknown or unreadable start keeps the
    name's kind, and a HEIF/AVIF photo (an ISO media file like MP4) keeps its photo name."""
    sniffed = _sniff_kind(p)
    if sniffed is None or sniffed == kind or (kind == "photo" and p.suffix.lower() in (".heic", ".heif", ".avif")):
        return kind
    a = {"photo": "a photo", "video": "a video", "archive": "an archive"}
    logger.warning("%s is named as %s but its content is %s; reading it as %s", _shown(shown), a[kind], a[sniffed],
                   a[sniffed])
    return sniffed


def _sniff_kind(p: Path) -> Literal["photo", "video", "archive"] | None:
    head = read_head(p)
    if has_photo_signature(head):
        return "photo"
    if head[4:8] == b"ftyp":
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3") or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if head.startswith(b"PK\x03\x04") or head[257:262] == b"ustar":
        return "archive"
    return None


def _display_join(display: str, root: Path, f: Path) -> str:
    rel = os.path.relpath(f, root)
    return rel if display in (".", "") else os.path.join(display, rel)


def _shown(name: str) -> str:
    """A name as text that can be written anywhere: bytes that are not UTF-8 (which the file system and tar
    hand over as surrogate escapes) become ``\\xNN``, so the report, CSV, checkpoint and annotated file names
    can hold them. The file itself is still read through its real path."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
