"""The one image reader: modes, bit depths, EXIF, alpha, limits, and crop = reconstruct on one file."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from psohead.errors import InputError
from psohead.io import images
from psohead.io.images import list_images, read_image, read_mask, to_uint8


def test_modes_depths_exif_and_alpha(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = 200
    Image.fromarray(rgb).convert("L").save(tmp_path / "g.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray((np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257)).save(tmp_path / "i16.png")
    for name in ["g.png", "p.png", "i16.png", "c.tif", "c.jpg"]:
        img = read_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == (60, 40)
        # 'P' conversion snaps 200 to the web palette's 204
        assert abs(int(np.asarray(img)[0, 0, 0]) - 200) <= 4 and np.asarray(img)[0, 59, 0] <= 2, name
    # a flat 16-bit value is scaled by the format's range, not by the image's own maximum
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "flat16.png")
    assert np.asarray(read_image(tmp_path / "flat16.png"))[0, 0].tolist() == [4, 4, 4]  # 1000 / 65535 * 255
    rgba = Image.fromarray(rgb).convert("RGBA")
    alpha = np.zeros((40, 60), np.uint8)
    alpha[:, 30:] = 255
    alpha[:, 45:] = 128
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    a = np.asarray(read_image(tmp_path / "a.png")).astype(int)
    assert a[0, 0].tolist() == [255, 255, 255]  # transparent -> the documented white background
    assert a[0, 40].tolist() == [0, 0, 0]  # opaque black stays
    assert abs(a[0, 50, 0] - 127) <= 1  # half-transparent black over white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 cw on display
    Image.fromarray(rgb).save(tmp_path / "e.jpg", exif=exif)
    e = read_image(tmp_path / "e.jpg")
    assert e.size == (40, 60)  # EXIF orientation applied
    assert np.asarray(e)[0, 20].mean() > 150 and np.asarray(e)[59, 20].mean() < 50


def test_in_memory_inputs_and_masks():
    arr = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(read_image(arr)), arr)
    assert np.array_equal(np.asarray(read_image(arr.astype(np.float32) / 255)), arr)
    t = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert np.abs(np.asarray(read_image(t)).astype(int) - arr).max() <= 1
    assert np.array_equal(to_uint8(t)[0], np.asarray(read_image(t)))
    m = read_mask(np.array([[True, False]]))
    assert m.mode == "L" and np.asarray(m).tolist() == [[255, 0]]
    with pytest.raises(InputError, match="uint8"):
        read_image(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(InputError, match="HxW"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="expected an image"):
        read_image(3.5)


def test_bad_files_and_the_pixel_limit(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "notes.png")
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    with pytest.raises(InputError, match=r"300x200 .* downscale"):
        read_image(tmp_path / "big.png")
    with pytest.raises(InputError, match="300x200"):
        read_image(Image.new("RGB", (300, 200)))


def test_list_images(tmp_path):
    for name in ("b.jpg", "a.PNG", "a_mask.png", ".hidden.png", "notes.txt", "c.tiff"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "a_mask.png", "b.jpg", "c.tiff"]
    assert [p.name for p in list_images(tmp_path, skip_masks=True)] == ["a.PNG", "b.jpg", "c.tiff"]
    assert [p.name for p in list_images([str(tmp_path / "*.jpg"), tmp_path / "missing.png"])] == \
        ["b.jpg", "missing.png"]


@pytest.mark.parametrize("kind", ["rgba", "grey16"])
def test_crop_and_reconstruct_read_a_file_alike(tmp_path, kind):
    """`psohead crop` and `psohead reconstruct` (its input step) align the same RGBA / 16-bit PNG
    to the same crop and camera."""
    pytest.importorskip("dlib")
    from psohead.cli import main
    from psohead.inversion.inputs import prepare_input

    photo = np.asarray(Image.open("examples/astronaut.jpg").convert("RGB"))
    path = tmp_path / f"{kind}.png"
    if kind == "rgba":
        alpha = np.full(photo.shape[:2], 255, np.uint8)
        alpha[:, :60] = 0  # a transparent strip: composited on white by both
        Image.fromarray(np.dstack([photo, alpha])).save(path)
    else:
        grey = np.asarray(Image.fromarray(photo).convert("L"), np.uint16) * 257
        Image.fromarray(grey).save(path)
    out = tmp_path / "crops"
    assert main(["crop", str(path), "--outdir", str(out), "--size", "512"]) == 0
    label = json.loads((out / "dataset.json").read_text())["labels"][0][1]
    prepared = prepare_input(path)
    assert np.allclose([float(v) for v in label], prepared.label[0].numpy(), atol=2e-6)
    cropped = np.asarray(Image.open(out / f"{kind}.jpg").convert("RGB"), np.float64)
    mine = np.asarray(prepared.image.resize((512, 512), Image.LANCZOS), np.float64)
    mse = ((cropped - mine) ** 2).mean()
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-12)) > 35  # the same crop, up to crop's JPEG
