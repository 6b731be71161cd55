"""Weights manager: manifests, cache directory, checksums, pinning, downloads and the conversion cache."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from influvision import weights
from influvision.errors import UnknownModelError, WeightsError

DLIB_SHA = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFLUVISION_CACHE", str(cache))
    monkeypatch.delenv("INFLUVISION_OFFLINE", raising=False)
    return cache


@pytest.fixture
def toy_manifests(tmp_path, monkeypatch):
    """A manifest folder with one model ``toy`` whose file is served from a local file:// URL."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    served = tmp_path / "served" / "toy.bin"
    served.parent.mkdir()
    served.write_bytes(b"toy weights " * 1000)
    monkeypatch.setattr(weights, "MANIFEST_DIR", folder)
    weights.load_manifest.cache_clear()

    def write(sha256: str | None, url: str | None = served.as_uri()) -> None:
        (folder / "toy.json").write_text(json.dumps({
            "name": "toy", "licence": "CC0-1.0", "source": "a test",
            "files": [{"file": "toy.bin", "sha256": sha256, "url": url}]}))
        weights.load_manifest.cache_clear()

    yield write, served
    weights.load_manifest.cache_clear()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- manifests -------------------------------------------------------------------------------------------------


def test_every_manifest_names_licence_source_and_a_hash_or_an_honest_null():
    names = weights.list_manifests()
    assert {"dlib-resnet-v1", "facenet-vggface2", "facenet-casia", "mtcnn"} <= set(names)
    for name in names:
        m = weights.load_manifest(name)
        assert m.name == name and m.licence and m.source
        for f in m.files:
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), (name, f.file)
            assert f.url or f.package, f"{name}: {f.file} can be neither downloaded nor found in a package"
        if any(f.sha256 is None for f in m.files):
            assert "sha256_note" in m.raw
        if m.raw.get("kind") == "face-embedder":
            assert m.input_size and m.embedding_dim and m.metric in ("euclidean", "cosine")
            assert m.default_threshold and m.threshold_calibration


def test_unknown_manifest_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="dlib-resnet-v1"):
        weights.load_manifest("no-such-model")


def test_cache_dir_follows_the_environment(_private_cache):
    assert weights.cache_dir() == _private_cache and _private_cache.is_dir()


# --- shipped weights -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("file", ["pnet.pt", "rnet.pt", "onet.pt"])
def test_mtcnn_weights_in_facenet_pytorch_match_their_manifest(file):
    path = weights.resolve_weights("mtcnn", file, download=False)
    assert path.parts[-3:] == ("facenet_pytorch", "data", file)
    state = weights.load_torch_weights("mtcnn", file)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_dlib_weights_are_found_in_the_installed_package():
    path = weights.resolve_weights("dlib-resnet-v1", download=False)
    assert path.name == "dlib_face_recognition_resnet_model_v1.dat" and path.stat().st_size == 22_466_066


def test_checksum_mismatch_names_the_file_and_both_hashes(tmp_path):
    bad = tmp_path / "x.dat"
    bad.write_bytes(b"not dlib")
    with pytest.raises(WeightsError) as err:
        weights.resolve_weights("dlib-resnet-v1", path=bad)
    msg = str(err.value)
    assert str(bad) in msg and DLIB_SHA in msg and _sha(bad) in msg


# --- add_weights -----------------------------------------------------------------------------------------------


def test_add_weights_verifies_against_the_manifest_hash(tmp_path, _private_cache):
    real = weights.resolve_weights("dlib-resnet-v1")
    dest = weights.add_weights("dlib-resnet-v1", real)
    assert dest == _private_cache / "dlib-resnet-v1" / real.name and _sha(dest) == DLIB_SHA
    # The cached copy now wins over the package copy.
    assert weights.resolve_weights("dlib-resnet-v1") == dest

    wrong = tmp_path / "wrong.dat"
    wrong.write_bytes(b"something else")
    with pytest.raises(WeightsError, match=DLIB_SHA):
        weights.add_weights("dlib-resnet-v1", wrong)
    with pytest.raises(WeightsError, match="not the one in the manifest"):
        weights.add_weights("dlib-resnet-v1", real, sha256="0" * 64)
    with pytest.raises(WeightsError, match="does not exist"):
        weights.add_weights("dlib-resnet-v1", tmp_path / "missing.dat")


def test_add_weights_pins_the_first_file_when_upstream_has_no_hash(toy_manifests, tmp_path, caplog):
    write, _ = toy_manifests
    write(sha256=None, url=None)
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"first")
    second.write_bytes(b"second")

    with caplog.at_level(logging.WARNING, logger="influvision.weights"):
        dest = weights.add_weights("toy", first)
    assert "pinned" in caplog.text
    assert (dest.parent / "toy.bin.sha256").read_text().split()[0] == _sha(first)
    assert weights.resolve_weights("toy") == dest

    # A different file needs its hash passed deliberately.
    with pytest.raises(WeightsError, match=f"--sha256 {_sha(second)}"):
        weights.add_weights("toy", second)
    with pytest.raises(WeightsError, match="fails its checksum"):
        weights.add_weights("toy", second, sha256=_sha(first))
    weights.add_weights("toy", second, sha256=_sha(second))
    assert dest.read_bytes() == b"second"

    dest.write_bytes(b"tampered")  # a cached file edited after it was pinned is refused
    with pytest.raises(WeightsError, match="fails its checksum"):
        weights.resolve_weights("toy")


def test_a_file_without_a_published_hash_must_at_least_load(tmp_path, _private_cache):
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(WeightsError, match="not a loadable PyTorch state dict .*; nothing installed"):
        weights.add_weights("facenet-casia", junk)
    with pytest.raises(WeightsError, match="is a folder"):
        weights.add_weights("facenet-casia", tmp_path)
    assert not any(_private_cache.rglob("*.pt"))
    state = tmp_path / "casia.pt"
    torch.save({"w": torch.zeros(2)}, state)
    assert weights.add_weights("facenet-casia", state).is_file()  # pinned; the network checks the keys later


# --- downloads -------------------------------------------------------------------------------------------------


def test_download_streams_verifies_and_renames_into_the_cache(toy_manifests, _private_cache):
    write, served = toy_manifests
    write(sha256=_sha(served))
    path = weights.resolve_weights("toy")
    assert path == _private_cache / "toy" / "toy.bin" and path.read_bytes() == served.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["toy.bin"]  # no temporary file left behind


def test_download_with_the_wrong_hash_saves_nothing(toy_manifests, _private_cache):
    write, _ = toy_manifests
    write(sha256="0" * 64)
    with pytest.raises(WeightsError, match="fail their checksum"):
        weights.download_weights("toy")
    assert list((_private_cache / "toy").iterdir()) == []


def test_download_without_a_published_hash_pins_it(toy_manifests):
    write, served = toy_manifests
    write(sha256=None)
    path = weights.download_weights("toy")
    assert (path.parent / "toy.bin.sha256").read_text().split()[0] == _sha(served)


def test_offline_download_fails_fast_saying_how_to_add_the_file(monkeypatch):
    monkeypatch.setenv("INFLUVISION_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        weights.resolve_weights("facenet-vggface2")
    msg = str(err.value)
    assert "influvision weights add facenet-vggface2 FILE" in msg
    assert "releases/download/v2.2.9/20180402-114759-vggface2.pt" in msg


def test_unreachable_server_gives_the_same_advice(toy_manifests):
    write, _ = toy_manifests
    write(sha256=None, url="http://127.0.0.1:9/toy.bin")  # the discard port: connection refused at once
    with pytest.raises(WeightsError, match="could not download .* influvision weights add toy FILE"):
        weights.download_weights("toy", timeout=5)


# --- conversion cache ------------------------------------------------------------------------------------------


def test_conversion_runs_once_and_a_tampered_cache_is_converted_again(_private_cache, caplog):
    calls = []

    def convert() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}

    first = weights.cached_conversion("toy", "ab" * 32, convert)
    second = weights.cached_conversion("toy", "ab" * 32, convert)
    assert len(calls) == 1 and torch.equal(first["w"], second["w"])
    target = _private_cache / "toy" / "toy-abababababab-v1.safetensors"
    assert (target.parent / (target.name + ".sha256")).read_text().split()[0] == _sha(target)

    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="influvision.weights"):
        third = weights.cached_conversion("toy", "ab" * 32, convert)
    assert len(calls) == 2 and "converting again" in caplog.text
    assert torch.equal(third["w"], first["w"])
    # A new conversion version ignores the old file.
    weights.cached_conversion("toy", "ab" * 32, convert, version=2)
    assert len(calls) == 3


def test_describe_lists_every_model_file_and_its_state(monkeypatch):
    monkeypatch.setenv("INFLUVISION_OFFLINE", "1")
    lines = weights.describe()
    assert any(line.startswith("dlib-resnet-v1") and "ok (" in line for line in lines)
    assert any(line.startswith("facenet-vggface2") and "influvision weights add" in line for line in lines)
    assert sum(line.startswith("mtcnn") and "ok (" in line for line in lines) == 3


def test_a_model_name_cannot_reach_outside_the_manifests(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUVISION_CACHE", str(tmp_path / "cache"))
    (tmp_path / "evil.json").write_text(json.dumps({"name": "x", "licence": "-", "source": "-",
                                                    "files": [{"file": "w.bin", "sha256": None}]}))
    payload = tmp_path / "w.bin"
    payload.write_bytes(b"not weights")
    name = f"../../../../../../..{tmp_path}/evil"
    with pytest.raises(UnknownModelError):
        weights.add_weights(name, payload)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "cache").exists()
