"""Dataset loading, filtering, mirroring, checking and packing (psohead.io.dataset*)."""
import itertools
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from psohead import camera
from psohead.errors import InputError
from psohead.io.dataset import DatasetError, HeadDataset, check_dataset, scan_dataset
from psohead.training.sampler import InfiniteSampler
from psohead.io.dataset_writer import DatasetWriter, pack_dataset
from conftest import require_shared

YAWS_DEG = [0, 30, -60, 100, 180, -150]


def make_images(res=16, n=len(YAWS_DEG)):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (res, res, 3), dtype=np.uint8) for _ in range(n)]
    masks = [(rng.random((res, res)) > 0.5).astype(np.uint8) * 255 for _ in range(n)]
    return imgs, masks


def write_raw(root, res=16, official=False, mask_ext=".png"):
    """Write a dataset by hand (PIL + json), independently of DatasetWriter."""
    imgs, masks = make_images(res)
    img_root = root / ("img" if official else "images")
    seg_root = root / ("seg" if official else "masks")
    labels = []
    for i, (img, mask, yaw) in enumerate(zip(imgs, masks, YAWS_DEG)):
        name = f"sub/{i:05d}"
        (img_root / "sub").mkdir(parents=True, exist_ok=True)
        (seg_root / "sub").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(img_root / f"{name}.png")
        Image.fromarray(mask).save(seg_root / f"{name}{mask_ext}")
        lab = camera.label_from_yaw_pitch(math.radians(yaw), 0.1)[0]
        labels.append([f"{name}.png", camera.format_label(lab)])
    (img_root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return imgs, masks


def test_folder_layout_items_match_files(tmp_path):
    imgs, masks = write_raw(tmp_path)
    ds = HeadDataset(tmp_path)
    assert len(ds) == len(YAWS_DEG) and ds.resolution == 16
    img, mask, label = ds[2]
    assert img.dtype == torch.uint8 and img.shape == (3, 16, 16) and mask.shape == (1, 16, 16)
    assert np.array_equal(img.permute(1, 2, 0).numpy(), imgs[2])
    assert np.array_equal(mask[0].numpy(), masks[2])
    yaw, pitch, _ = camera.yaw_pitch_from_label(label)
    assert abs(math.degrees(yaw.item()) + 60) < 1e-3 and abs(pitch.item() - 0.1) < 1e-4


def test_hidden_partial_files_of_a_killed_write_are_not_entries(tmp_path):
    """A write killed half-way leaves a hidden temp file with the image suffix (psohead.atomic);
    the dataset must read as if it were not there, in a folder and in a zip."""
    from psohead.atomic import partial_path

    write_raw(tmp_path)
    for sub in ("images", "masks"):
        partial_path(tmp_path / sub / "sub" / "00006.png").write_bytes(b"half a png")
    assert scan_dataset(tmp_path).problems == []
    assert len(HeadDataset(tmp_path)) == len(YAWS_DEG)
    packed = tmp_path / "packed.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for p in sorted(tmp_path.rglob("*")):
            if p.is_file() and p != packed:
                zf.write(p, p.relative_to(tmp_path).as_posix())
    assert scan_dataset(packed).problems == []
    assert len(HeadDataset(packed)) == len(YAWS_DEG)


def test_xflip_mirrors_pixels_and_label(tmp_path):
    imgs, masks = write_raw(tmp_path)
    ds = HeadDataset(tmp_path, xflip=True)
    n = len(YAWS_DEG)
    assert len(ds) == 2 * n
    img, mask, label = ds[n + 1]  # mirror of item 1 (yaw +30)
    assert np.array_equal(img.permute(1, 2, 0).numpy(), imgs[1][:, ::-1])
    assert np.array_equal(mask[0].numpy(), masks[1][:, ::-1])
    # analytic truth: the mirror image of a yaw-30 view is the yaw -30 view
    expect = camera.label_from_yaw_pitch(math.radians(-30), 0.1)[0]
    assert torch.allclose(label, expect, atol=2e-6)
    assert torch.allclose(ds.all_labels()[n + 1], label)


def test_yaw_filter_and_back_repeat(tmp_path):
    write_raw(tmp_path)
    ds = HeadDataset(tmp_path, min_yaw=0, max_yaw=180, back_repeat=4)
    # |yaw| >= 90: 100, 180, -150 -> repeated 4x; 0, 30, -60 once
    assert len(ds) == 3 + 3 * 4
    ds = HeadDataset(tmp_path, min_yaw=20, max_yaw=120, back_repeat=2)
    kept = sorted(i for i, _ in ds.index)
    assert kept == [1, 2, 3, 3]
    with pytest.raises(InputError, match="no image has"):
        HeadDataset(tmp_path, min_yaw=170, max_yaw=175)


def test_official_layout_separate_mask_zip(tmp_path):
    imgs, masks = write_raw(tmp_path, official=True)
    seg_zip = tmp_path / "seg.zip"
    with zipfile.ZipFile(seg_zip, "w") as z:
        for p in sorted((tmp_path / "seg").rglob("*.png")):
            z.write(p, p.relative_to(tmp_path / "seg").as_posix())
    ds = HeadDataset(tmp_path / "img", seg_path=seg_zip)
    assert np.array_equal(ds[4][1][0].numpy(), masks[4])
    with pytest.raises(DatasetError, match="no masks"):
        HeadDataset(tmp_path / "img")


def test_masks_matched_by_stem(tmp_path):
    imgs, masks = write_raw(tmp_path, mask_ext=".bmp")
    ds = HeadDataset(tmp_path)
    assert np.array_equal(ds[0][1][0].numpy(), masks[0])


def test_check_lists_every_offending_entry(tmp_path):
    write_raw(tmp_path)
    (tmp_path / "masks/sub/00001.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks/sub/00002.png")
    meta = json.loads((tmp_path / "images/dataset.json").read_text())
    meta["labels"][3][1] = meta["labels"][3][1][:24]
    meta["labels"].append(["sub/99999.png", meta["labels"][0][1]])
    (tmp_path / "images/dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError) as err:
        check_dataset(tmp_path)
    probs = "\n".join(err.value.problems)
    assert "sub/00001.png: no mask" in probs
    assert "sub/00002.png: mask is 8x8 but its image sub/00002.png is 16x16" in probs
    assert "sub/00003.png: label has 24 numbers, expected 25" in probs
    assert "sub/99999.png, which is not an image" in probs
    assert len(err.value.problems) == 4
    assert "\n" not in str(err.value)
    # the loader refuses the same dataset before training starts
    with pytest.raises(DatasetError, match="no mask"):
        HeadDataset(tmp_path)


def test_check_bad_rotation_and_missing_json(tmp_path):
    write_raw(tmp_path)
    meta = json.loads((tmp_path / "images/dataset.json").read_text())
    meta["labels"][0][1][0] = "2.0"
    (tmp_path / "images/dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="sub/00000.png: label.*rigid rotation"):
        check_dataset(tmp_path)
    (tmp_path / "images/dataset.json").unlink()
    with pytest.raises(DatasetError, match="no dataset.json"):
        check_dataset(tmp_path)


def test_check_summary(tmp_path):
    write_raw(tmp_path)
    s = check_dataset(tmp_path)
    assert s["count"] == 6 and s["resolution"] == 16
    assert list(s["yaw_histogram_deg"].values()) == [1, 1, 1, 1, 0, 2]


def test_pack_round_trip_and_resize(tmp_path):
    imgs, masks = write_raw(tmp_path / "src")
    out = tmp_path / "packed.zip"
    pack_dataset(tmp_path / "src", out, progress=False)
    a, b = HeadDataset(tmp_path / "src"), HeadDataset(out)
    for i in range(len(a)):
        for x, y in zip(a[i], b[i]):
            assert torch.equal(x, y)
    assert not list(tmp_path.glob(".packed.zip.tmp*"))
    with pytest.raises(InputError, match="already exists"):
        pack_dataset(tmp_path / "src", out, progress=False)
    small = tmp_path / "small"
    pack_dataset(out, small, resolution=8, progress=False)
    ds = HeadDataset(small)
    assert ds.resolution == 8 and ds[0][1].shape == (1, 8, 8)
    ref = np.asarray(Image.fromarray(imgs[0]).resize((8, 8), Image.LANCZOS))
    assert np.array_equal(ds[0][0].permute(1, 2, 0).numpy(), ref)


def test_writer_rejects_bad_entries(tmp_path):
    imgs, masks = make_images()
    lab = camera.label_from_yaw_pitch(0.0)[0]
    w = DatasetWriter(tmp_path / "d")
    w.add("a", imgs[0], masks[0], lab)
    with pytest.raises(InputError, match="duplicate"):
        w.add("a", imgs[1], masks[1], lab)
    with pytest.raises(InputError, match="mask must be"):
        w.add("b", imgs[1], masks[1][:8], lab)
    with pytest.raises(InputError, match="label"):
        w.add("c", imgs[1], masks[1], lab[:24])
    w.close()
    assert HeadDataset(tmp_path / "d").num_raw == 1


def test_shared_samples_missing_mask_reported():
    root = require_shared("data", "panohead_samples")
    scan = scan_dataset(root / "img", seg_path=root / "seg")
    assert [p for p in scan.problems] == [f"man.jpg: no mask (looked for {root / 'seg'}/man.*)"]
    assert len(scan.entries) == 3
    yaw = camera.yaw_pitch_from_label(torch.stack([e.label for e in scan.entries[:2]]))[0]
    assert yaw.abs().max() < math.radians(30)  # near-frontal sample crops


def test_infinite_sampler_resumable_and_disjoint():
    s = InfiniteSampler(10, seed=3)
    first = list(itertools.islice(iter(s), 25))
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:20]) == list(range(10))
    resumed = list(itertools.islice(iter(InfiniteSampler(10, seed=3, start=7)), 18))
    assert resumed == first[7:25]
    r0 = list(itertools.islice(iter(InfiniteSampler(10, rank=0, world=2, seed=3)), 5))
    r1 = list(itertools.islice(iter(InfiniteSampler(10, rank=1, world=2, seed=3)), 5))
    assert sorted(r0 + r1) == list(range(10))
