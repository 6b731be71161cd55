"""Model weights: manifests, the cache directory, sha256 checks, downloads, conversions and ``add_weights``.

Every model file influvision loads is described by a JSON manifest in the repository's ``weights/`` folder
(one per model) and is checked against the sha256 there before anything parses it. Files are looked for, in order:

1. a path the caller gives;
2. the cache directory (``$INFLUVISION_CACHE``, else ``~/.cache/influvision``), under ``<model>/<file>``;
3. the installed Python package that ships it (``face-recognition-models``, ``facenet-pytorch``);
4. the manifest's URL, downloaded into the cache (streamed to a temporary file, sha256 checked, then renamed).
   Set ``INFLUVISION_OFFLINE=1`` to never touch the network.

Files whose upstream publishes no checksum have ``"sha256": null`` in their manifest. For those, the first file
added (``add_weights`` or a download) is *pinned*: its hash is written next to it as ``<file>.sha256`` and every
later load must match it. Replacing a pinned file needs the new hash passed explicitly (``sha256=``).

Converted weights (dlib's .dat to safetensors) are cached as ``<model>/<model>-<source sha[:12]>-v<N>.safetensors``
with their own sha256 in a ``.sha256`` file beside them. A converted file that no longer matches its recorded hash
is treated as damaged: it is logged, deleted and converted again from the verified source.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import torch

from .errors import UnknownModelError, WeightsError
from .files import write_text_atomically, written_atomically
from .hashing import sha256_file

log = logging.getLogger(__name__)

def _manifest_dir() -> Path:
    source_tree = Path(__file__).resolve().parents[1] / "weights"
    if source_tree.is_dir():
        return source_tree
    return Path(str(importlib.resources.files("influvision._manifests")))


MANIFEST_DIR = _manifest_dir()
"""Where the ``*.json`` manifests live: the repository's ``weights/`` folder, shipped as ``influvision._manifests``."""

CACHE_ENV = "INFLUVISION_CACHE"
OFFLINE_ENV = "INFLUVISION_OFFLINE"
DOWNLOAD_TIMEOUT_S = 20.0
_CHUNK = 1 << 20


# --- manifests -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsFile:
    """One file of a model.

    Attributes:
        file: the file name, as stored in the cache and as ``add_weights`` expects it.
        sha256: lowercase hex digest, or None where upstream publishes none (then the first file added is pinned).
        size_bytes: expected size, or None when unknown.
        package: the Python package that ships the file (found without importing it), or None.
        package_path: the file's path inside that package's folder.
        url: where to download it from, or None.
    """

    file: str
    sha256: str | None = None
    size_bytes: int | None = None
    package: str | None = None
    package_path: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A model's manifest (``weights/<name>.json``). Fields beyond these stay in ``raw``."""

    name: str
    licence: str
    source: str
    files: tuple[WeightsFile, ...]
    input_size: int | None
    embedding_dim: int | None
    metric: str | None
    default_threshold: float | None
    threshold_calibration: str | None
    raw: dict

    def entry(self, file: str | None = None) -> WeightsFile:
        """The file entry called ``file`` (by base name); with None, the only entry of a one-file model."""
        if file is None:
            if len(self.files) != 1:
                raise WeightsError(f"model {self.name!r} has several files "
                                   f"({', '.join(f.file for f in self.files)}): name one")
            return self.files[0]
        base = Path(file).name
        for f in self.files:
            if f.file == base:
                return f
        raise WeightsError(f"model {self.name!r} has no file {base!r}; its files are: "
                           f"{', '.join(f.file for f in self.files)}")


def list_manifests() -> list[str]:
    """Names of all models with a manifest, sorted."""
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))


@cache
def load_manifest(name: str) -> Manifest:
    """Read ``weights/<name>.json``.

    Raises:
        UnknownModelError: no manifest of that name (the message lists those that exist).
        WeightsError: the manifest is not valid JSON or lacks required fields.
    """
    if not isinstance(name, str) or name not in list_manifests():  # also keeps "../x" out of every path built
        raise UnknownModelError(str(name), list_manifests(), kind="weights")
    path = MANIFEST_DIR / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        files = tuple(WeightsFile(**{k: f.get(k) for k in WeightsFile.__dataclass_fields__}) for f in raw["files"])
        return Manifest(name=raw["name"], licence=raw["licence"], source=raw["source"], files=files,
                        input_size=raw.get("input_size"), embedding_dim=raw.get("embedding_dim"),
                        metric=raw.get("metric"), default_threshold=raw.get("default_threshold"),
                        threshold_calibration=raw.get("threshold_calibration"), raw=raw)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise WeightsError(f"manifest {path} is damaged: {err!r}") from err


# --- cache, hashes ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The weights cache: ``$INFLUVISION_CACHE`` if set, else ``~/.cache/influvision``. Created on demand."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "influvision"
    path.mkdir(parents=True, exist_ok=True)
    return path


def verify_file(path: str | Path, expected_sha256: str, what: str = "weights file") -> str:
    """Check a file's sha256.

    Returns:
        The digest (equal to ``expected_sha256``).

    Raises:
        WeightsError: the file is missing, or its hash differs; the message names the file and both hashes.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist")
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise WeightsError(f"{what} {path} fails its checksum: sha256 is {actual}, expected {expected_sha256}. "
                           "The file is damaged or is a different release; replace it.")
    return actual


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_pin(path: Path) -> str | None:
    pin = _pin_path(path)
    return pin.read_text().split()[0].lower() if pin.is_file() else None


def _expected_sha(entry: WeightsFile, local: Path) -> str | None:
    """The hash a file must have: the manifest's, else the pin written beside the cached copy."""
    return entry.sha256 or _read_pin(local)


def _is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _how_to_add(name: str, entry: WeightsFile) -> str:
    where = f" (download it from {entry.url} on a machine with internet access)" if entry.url else ""
    return f"add the file{where} with: influvision weights add {name} FILE"


# --- finding a verified file -----------------------------------------------------------------------------------


def cached_path(name: str, file: str | None = None) -> Path:
    """Where ``add_weights``/downloads put the file (it may not exist yet)."""
    return cache_dir() / name / load_manifest(name).entry(file).file


def package_path(name: str, file: str | None = None) -> Path | None:
    """The file inside its installed package, or None (not shipped, package absent, file absent).

    The package is located with ``importlib.util.find_spec``, never imported (``face_recognition_models``
    imports ``pkg_resources`` at import time).
    """
    entry = load_manifest(name).entry(file)
    if not entry.package or not entry.package_path:
        return None
    try:
        spec = find_spec(entry.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / entry.package_path
    return path if path.is_file() else None


def resolve_weights(name: str, file: str | None = None, *, path: str | Path | None = None,
                    download: bool = True) -> Path:
    """A local, checksum-verified copy of one of a model's files.

    Args:
        name: manifest name, e.g. ``"dlib-resnet-v1"`` or ``"mtcnn"``.
        file: which file, for models with several (``"pnet.pt"``); None for one-file models.
        path: use this file instead of looking; it must still match the manifest's (or the pinned) sha256.
            For a model without a known hash and no pin, a given path is trusted and its hash logged.
        download: allow a download from the manifest URL when no local copy exists.

    Returns:
        The path of the verified file.

    Raises:
        UnknownModelError: no such manifest.
        WeightsError: the file is missing (the message says how to add it) or fails its checksum.
    """
    manifest = load_manifest(name)
    entry = manifest.entry(file)
    cached = cache_dir() / name / entry.file
    expected = _expected_sha(entry, cached)

    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} for {name!r} does not exist")
        if expected is None:
            log.warning("%s has no known sha256; using %s as given (sha256 %s)", name, path, sha256_file(path))
        else:
            verify_file(path, expected, f"{name} weights file")
        return path

    if cached.is_file():
        if expected is None:
            raise WeightsError(f"{cached} has neither a known sha256 nor a pin file; "
                               f"remove it and {_how_to_add(name, entry)}")
        verify_file(cached, expected, f"cached {name} weights file")
        return cached

    shipped = package_path(name, file)
    if shipped is not None:
        if expected is None:
            raise WeightsError(f"manifest {name!r} ships {shipped} without a sha256; fix the manifest")
        verify_file(shipped, expected, f"{name} weights file")
        return shipped

    if download and entry.url:
        return download_weights(name, file)
    hint = f"the {entry.package} package does not have it; " if entry.package else ""
    raise WeightsError(f"no weights file for {name!r} ({entry.file}): {hint}{_how_to_add(name, entry)}")


def load_torch_weights(name: str, file: str | None = None, *, path: str | Path | None = None,
                       download: bool = True) -> dict[str, torch.Tensor]:
    """A verified PyTorch state dict: :func:`resolve_weights`, then ``torch.load(weights_only=True)`` on the CPU.

    For example ``load_torch_weights("mtcnn", "pnet.pt")`` gives facenet-pytorch's P-Net weights after checking
    their sha256.

    Raises:
        WeightsError: missing, failing the checksum, or not a state dict.
    """
    return _read_state_dict(resolve_weights(name, file, path=path, download=download))


def _read_state_dict(src: Path) -> dict:
    """``torch.load(weights_only=True)`` of a file that must hold a state dict."""
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a safe state dict
        raise WeightsError(f"{src} is not a loadable PyTorch state dict ({err})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{src} holds a {type(state).__name__}, expected a state dict")
    return state


def describe() -> list[str]:
    """One line per model file: name, file, licence and whether a verified copy is available here.

    Never downloads. Used by ``influvision weights list``.
    """
    lines = []
    for name in list_manifests():
        manifest = load_manifest(name)
        for entry in manifest.files:
            try:
                path = resolve_weights(name, entry.file if len(manifest.files) > 1 else None, download=False)
                status = f"ok ({path})"
            except WeightsError as err:
                status = f"missing or damaged: {err}"
            lines.append(f"{name:18s} {entry.file:45s} [{manifest.licence.split(' ')[0]}] {status}")
    return lines


# --- downloads and add_weights ---------------------------------------------------------------------------------


def download_weights(name: str, file: str | None = None, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download a model file from its manifest URL into the cache, verifying its sha256.

    The body is streamed to a temporary file in the cache folder and renamed into place only after the hash
    matches, so an interrupted download never leaves a half file under the real name. For a manifest without a
    sha256, the downloaded file's hash is pinned (logged as a warning) and later loads must match it.

    Raises:
        WeightsError: offline (``INFLUVISION_OFFLINE`` set or the network unreachable), HTTP error, or a checksum
            mismatch; the message says how to add the file by hand.
    """
    entry = load_manifest(name).entry(file)
    if not entry.url:
        raise WeightsError(f"{name!r} ({entry.file}) has no download URL: {_how_to_add(name, entry)}")
    if _is_offline():
        raise WeightsError(f"cannot download {name!r} weights: {OFFLINE_ENV} is set. "
                           f"To use them offline, {_how_to_add(name, entry)}")
    dest = cache_dir() / name / entry.file
    h = hashlib.sha256()
    size = 0
    t0 = time.perf_counter()
    log.info("downloading %s weights from %s", name, entry.url)
    with written_atomically(dest) as tmp:  # nothing is installed unless every check below passes
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(entry.url, timeout=timeout) as resp:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise WeightsError(f"could not download {name!r} weights from {entry.url} ({reason}). "
                               f"If this machine is offline, {_how_to_add(name, entry)}") from err
        digest = h.hexdigest()
        expected = _expected_sha(entry, dest)
        if expected is not None and digest != expected:
            raise WeightsError(f"downloaded {name!r} weights from {entry.url} fail their checksum: sha256 is "
                               f"{digest}, expected {expected}. Nothing was saved.")
        if entry.size_bytes is not None and size != entry.size_bytes:
            raise WeightsError(f"downloaded {name!r} weights have {size} bytes, expected {entry.size_bytes}")
    if expected is None:
        write_text_atomically(_pin_path(dest), f"{digest}  {entry.file}\n")
        log.warning("%s has no published sha256; pinned the downloaded file's hash %s", name, digest)
    log.info("downloaded %s (%d bytes) in %.1f s", dest, size, time.perf_counter() - t0)
    return dest


def add_weights(name: str, file: str | Path, sha256: str | None = None) -> Path:
    """Copy a weights file into the cache after verifying it (the way to install weights offline).

    Args:
        name: manifest name, e.g. ``"facenet-vggface2"``.
        file: the file to add. For several-file models its base name picks the entry (``pnet.pt``).
        sha256: the hash you expect. Where the manifest has a hash, this must equal it (or be None). Where the
            manifest has none (``null``), the first file added is pinned without it; replacing a pinned file with
            a different one needs its hash passed here, as a deliberate confirmation.

    Returns:
        The file's path in the cache (``<cache>/<name>/<file name>``).

    Raises:
        UnknownModelError: no such manifest.
        WeightsError: the file is missing or fails the checksum (message names the file and both hashes).
    """
    manifest = load_manifest(name)
    src = Path(file).expanduser()
    if src.is_dir():
        raise WeightsError(f"{src} is a folder; give the path of the downloaded {name!r} weights file")
    if not src.is_file():
        raise WeightsError(f"{src} does not exist; give the path of the downloaded {name!r} weights file")
    entry = manifest.entry(src.name if len(manifest.files) > 1 else None)
    dest = cache_dir() / name / entry.file
    given = sha256.lower() if sha256 else None
    pinned = _read_pin(dest) if dest.is_file() else None
    if entry.sha256 and given and given != entry.sha256:
        raise WeightsError(f"the sha256 you gave ({given}) is not the one in the manifest of {name!r} "
                           f"({entry.sha256})")
    expected = entry.sha256 or given or pinned
    actual = sha256_file(src)
    if expected is not None and actual != expected:
        extra = "" if entry.sha256 or given else (
            f"; a different file was added before and its hash is pinned. If you mean to replace it, "
            f"pass its hash: influvision weights add {name} FILE --sha256 {actual}")
        raise WeightsError(f"{src} fails its checksum for {name!r}: sha256 is {actual}, expected {expected}{extra}")
    if entry.sha256 is None and manifest.raw.get("format") == "torch-state-dict":
        # Nothing published to check it against: at least it must be what the loader will read.
        try:
            _read_state_dict(src)
        except WeightsError as err:
            raise WeightsError(f"{err}; nothing installed") from None
    with written_atomically(dest) as tmp:
        shutil.copyfile(src, tmp)
    if entry.sha256 is None:
        write_text_atomically(_pin_path(dest), f"{actual}  {entry.file}\n")
        if given is None:
            log.warning("%s has no published sha256; pinned the added file's hash %s", name, actual)
    log.info("added %s as %s", src, dest)
    return dest


# --- conversion cache ------------------------------------------------------------------------------------------


def cached_conversion(name: str, source_sha256: str, convert: Callable[[], dict[str, torch.Tensor]],
                      version: int = 1) -> dict[str, torch.Tensor]:
    """Convert weights once and keep the result as safetensors in the cache.

    Args:
        name: model name; the file goes to ``<cache>/<name>/<name>-<source_sha256[:12]>-v<version>.safetensors``.
        source_sha256: the verified hash of the source file (keys the cache to the exact input).
        convert: builds the state dict (CPU tensors) from the source; called only on a cache miss.
        version: bump when the conversion changes, so old caches are ignored.

    Returns:
        The state dict, CPU tensors.

    The converted file's own sha256 is recorded beside it and checked on every load; a mismatch (a damaged or
    edited file) is logged, the file deleted and the conversion redone from the verified source.
    """
    from safetensors.torch import load_file, save_file

    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{source_sha256[:12]}-v{version}.safetensors"
    recorded = _read_pin(target)
    if target.is_file() and recorded is not None:
        actual = sha256_file(target)
        if actual == recorded:
            return load_file(target)
        log.warning("converted weights %s fail their recorded checksum (sha256 %s, recorded %s); converting again",
                    target, actual, recorded)
        target.unlink()

    t0 = time.perf_counter()
    state = {k: v.detach().to("cpu").contiguous() for k, v in convert().items()}
    with written_atomically(target) as tmp:
        save_file(state, str(tmp), metadata={"model": name, "source_sha256": source_sha256, "version": str(version)})
        digest = sha256_file(tmp)
    write_text_atomically(_pin_path(target), f"{digest}  {target.name}\n")
    log.info("converted %s weights to %s in %.2f s", name, target, time.perf_counter() - t0)
    return state
