"""Zip and tar archives read as one kind of member list, and the rules that keep extraction inside its folder.

:func:`open_members` lists an archive's entries as :class:`Member` records whatever its format (zip; tar,
plain or gzip/bzip2/xz-compressed); what to extract and under which limits is the caller's choice
(:mod:`influvision.sources`). Nothing here writes where a member's name points: :func:`copy_limited` writes
to a path the caller generates, and :func:`unsafe_member_name` says why a name that would leave the archive's
folder is refused.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")

# What a damaged tar or compressed stream raises while it is read.
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, ValueError)


class DamagedArchive(Exception):
    """The archive cannot be opened at all; ``problem`` says why, for the skipped-input list."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


class TooLarge(Exception):
    """A member holds more bytes than it declares (a possible zip bomb)."""


@dataclass
class Member:
    """An archive entry as both archive kinds describe it."""

    name: str
    is_dir: bool
    mode: int  # st_mode bits; 0 when the archive does not record them
    size: int  # declared uncompressed size
    compressed_size: int  # 0 when unknown (tar)
    encrypted: bool
    open: Callable[[], IO[bytes]]


def read_head(p: Path) -> bytes:
    """A file's first 512 bytes (empty when it cannot be read)."""
    try:
        with open(p, "rb") as f:
            return f.read(512)
    except OSError:
        return b""


def _is_tar_head(head: bytes) -> bool:
    """Whether a file's first bytes are a tar header or a gzip, bzip2 or xz stream."""
    return head[257:262] == b"ustar" or head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))


def is_zip(p: Path) -> bool:
    """Whether an archive is read as zip (else as tar): its first bytes decide where they say (a zip named
    .tar.gz), else its name."""
    head = read_head(p)
    if head[:2] == b"PK" or _is_tar_head(head):
        return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
    lower = p.name.lower()
    return lower.endswith(".zip") or (not lower.endswith(ARCHIVE_SUFFIXES[1:]) and zipfile.is_zipfile(p))


@contextmanager
def open_members(p: Path, stopped: Callable[[str], None]) -> Iterator[Iterable[Member]]:
    """The archive's members while it is open: a zip's sorted by name, a tar's in archive order (one pass, also
    for .tar.gz; a damaged tail ends the list and ``stopped`` is told why).

    Raises:
        DamagedArchive: the archive cannot be opened.
    """
    if is_zip(p):
        try:
            zf = zipfile.ZipFile(p)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DamagedArchive(f"damaged archive: not a readable ZIP file ({e})") from e
        with zf:
            yield [Member(i.filename, i.is_dir(), i.external_attr >> 16, i.file_size, i.compress_size,
                          bool(i.flag_bits & 0x1), lambda i=i: zf.open(i))
                   for i in sorted(zf.infolist(), key=lambda i: i.filename)]
        return
    try:
        tf = tarfile.open(p, "r:*")  # noqa: SIM115 -- closed by the `with tf` below
    except _TAR_ERRORS as e:
        raise DamagedArchive(f"damaged archive: not a readable TAR file ({str(e).splitlines()[0]})") from e

    def opener(m: tarfile.TarInfo) -> IO[bytes]:
        f = tf.extractfile(m)
        if f is None:
            raise OSError("member has no data")
        return f

    def members() -> Iterator[Member]:
        it = iter(tf)
        while True:
            try:
                m = next(it)
            except StopIteration:
                return
            except _TAR_ERRORS as e:
                stopped(f"damaged archive: reading stopped part-way ({e})")
                return
            if m.isreg():
                mode = stat.S_IFREG
            elif m.isdir():
                mode = stat.S_IFDIR
            elif m.issym() or m.islnk():
                mode = stat.S_IFLNK
            else:
                mode = stat.S_IFCHR  # devices, fifos, unknown types: all refused
            yield Member(m.name, m.isdir(), mode, m.size, 0, False, lambda m=m: opener(m))

    with tf:
        yield members()


def copy_limited(src: IO[bytes], target: Path, limit: int) -> int:
    """Copy at most ``limit`` bytes into a new file; raise :class:`TooLarge` if the member has more."""
    written = 0
    with src, open(target, "xb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise TooLarge
            out.write(chunk)
    return written


def unsafe_member_name(name: str) -> str | None:
    """Reason an archive member name is refused, or None when it stays inside the archive."""
    n = name.replace("\\", "/")
    if "\x00" in n:
        return "unsafe name in archive (contains a NUL byte): refused"
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "unsafe path in archive (absolute path): refused"
    if ".." in n.split("/"):
        return "unsafe path in archive ('..' points outside the archive): refused"
    return None


def safe_suffix(name: str) -> str:
    """A member's extension when it is a plain one (letters and digits), else nothing."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
