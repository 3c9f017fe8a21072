"""Photos that used to give a silent wrong crop (issue 23): turned without EXIF, several faces, no
face at all; and `psohead crop`'s own output read back as a dataset. Uses examples/*.jpg."""
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psohead.cli import main
from psohead.preprocess.pipeline import SeveralFacesWarning, TurnedPhotoWarning, align
from psohead.preprocess.pose import rotation_from_label

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.filterwarnings("ignore::psohead.preprocess.FaceTooSmallWarning")


def _psnr(a, b) -> float:
    mse = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean()
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))  # equal images: 148 dB


def _angle_deg(a, b) -> float:
    ra, rb = rotation_from_label(a), rotation_from_label(b)
    return math.degrees(math.acos(np.clip((np.trace(ra.T @ rb) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def upright():
    return align(EXAMPLES / "astronaut.jpg", with_mask=False)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_photo_turned_without_exif_is_turned_back_with_a_warning(upright, degrees):
    """Before: a quarter turn gave a sideways crop, half and three quarters 'no face found'."""
    turned = Image.open(EXAMPLES / "astronaut.jpg").rotate(degrees, expand=True)  # no EXIF orientation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = align(turned, with_mask=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, TurnedPhotoWarning)]
    assert len(notes) == 1 and "turned upright" in notes[0]
    assert face.report["turned_ccw_deg"] == (360 - degrees) % 360
    assert _psnr(face.image, upright.image) > 25  # the same upright crop
    assert _angle_deg(face.label, upright.label) < 2


def test_two_faces_use_the_largest_and_say_how_many(tmp_path, capsys):
    man, astronaut = Image.open(EXAMPLES / "man.jpg").convert("RGB"), Image.open(EXAMPLES / "astronaut.jpg")
    both = Image.new("RGB", (astronaut.width + man.width, max(astronaut.height, man.height)), "white")
    both.paste(astronaut, (0, 0))
    both.paste(man, (astronaut.width, 0))
    both.save(tmp_path / "two.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = align(tmp_path / "two.jpg", with_mask=False)
    notes = [str(w.message) for w in caught if issubclass(w.category, SeveralFacesWarning)]
    assert len(notes) == 1 and "2 faces found; using the largest" in notes[0]
    alone = align(EXAMPLES / "man.jpg", with_mask=False)
    assert _psnr(face.image, alone.image) > 25  # the larger face: the man's
    with warnings.catch_warnings(record=True) as caught:  # one real face and a weak false hit: no warning
        warnings.simplefilter("always")
        align(EXAMPLES / "astronaut.jpg", with_mask=False)
    assert not [w for w in caught if issubclass(w.category, SeveralFacesWarning)]
    # the CLI prints it as one line
    assert main(["crop", str(tmp_path / "two.jpg"), "--outdir", str(tmp_path / "out"), "--no-mask"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "2 faces found" in line]
    assert len(notes) == 1 and notes[0].startswith("warning: ") and "Warning:" not in notes[0]
    assert ".py:" not in err and "Traceback" not in err  # no Python source line with it


def test_crop_that_finds_no_face_writes_nothing(tmp_path, capsys):
    Image.new("RGB", (200, 200), (120, 130, 140)).save(tmp_path / "wall.jpg")
    out = tmp_path / "out"
    assert main(["crop", str(tmp_path / "wall.jpg"), "--outdir", str(out), "--no-mask"]) == 1
    assert "no face found" in capsys.readouterr().err
    assert not out.exists()


def test_dataset_check_reads_crop_output(tmp_path, capsys):
    """`psohead dataset check` on what `psohead crop` wrote said 'no masks folder'."""
    from psohead.io.dataset import HeadDataset

    out = tmp_path / "crops"
    assert main(["crop", str(EXAMPLES / "man.jpg"), "--outdir", str(out)]) == 0
    capsys.readouterr()
    assert main(["dataset", "check", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 1 and summary["masks"] is True and summary["resolution"] == 563
    ds = HeadDataset(out)
    assert ds.names == ["man.jpg"] and ds[0][1].shape == (1, 563, 563)
