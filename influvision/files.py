"""Reading input files without surprises, and writing outputs so that an interruption never leaves half a file."""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import InfluvisionError

_counter = itertools.count()

# Largest reference image file (a person's photo, a brand's logo) read, in bytes.
MAX_REFERENCE_BYTES = 64 * 1024 * 1024


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Opened without blocking, so a FIFO or a device never hangs the caller; it is refused like a file that is
    too large.

    Raises:
        OSError: the file cannot be opened or read, is not a regular file (``EINVAL``) or is larger than
            ``max_bytes`` (``EFBIG``); ``strerror`` says which in plain words.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file but a pipe, device or socket", str(path))
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"file too large ({st.st_size / 2**20:.0f} MiB, at most "
                                       f"{max_bytes / 2**20:.0f} MiB)", str(path))
        data = f.read(st.st_size + 1)  # not max_bytes + 1: a buffered read reserves what it is asked for
    if len(data) > max_bytes:  # grew while being read
        raise OSError(errno.EFBIG, f"file too large (more than {max_bytes / 2**20:.0f} MiB)", str(path))
    return data


@contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path`` in one step.

    A run interrupted while writing leaves the earlier file (or none), never a truncated one. The temporary
    name keeps the suffix, so writers that choose the format by extension (Pillow, FFmpeg) still do.
    """
    path = Path(os.path.realpath(path))  # a link to the output keeps pointing at the new file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}-{threading.get_ident()}-{next(_counter)}.part{path.suffix}")
    try:
        yield tmp
        with suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # a private report stays private
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`written_atomically`."""
    with written_atomically(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def writable_folder(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a folder that exists (made when missing) and can be written to.

    Raises:
        InfluvisionError: it is a file, cannot be made or is not writable; the message starts with ``what``.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InfluvisionError(f"{what} {path} is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InfluvisionError(f"{what} {path}: cannot make the folder ({e.strerror or e})") from None
    if not os.access(p, os.W_OK):
        raise InfluvisionError(f"{what} {path}: not writable (permission denied)")
    return p
