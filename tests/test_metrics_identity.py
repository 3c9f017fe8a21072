from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from psohead.errors import InputError
from psohead.metrics.identity import SAME_PERSON_DISTANCE, IdentityModel

MAN = Path(__file__).resolve().parents[1] / "examples" / "man.jpg"


@pytest.fixture(scope="module")
def model():
    return IdentityModel()


def test_same_face_is_close_other_face_is_far(model):
    astronaut = skimage.data.astronaut()
    man = np.asarray(Image.open(MAN).convert("RGB"))
    mirror = model.distance(astronaut, astronaut[:, ::-1])
    other = model.distance(astronaut, man)
    assert mirror < SAME_PERSON_DISTANCE / 2 and other > SAME_PERSON_DISTANCE
    assert model.similarity(astronaut, astronaut[:, ::-1]) > model.similarity(astronaut, man)
    assert model.similarity(astronaut, astronaut) == pytest.approx(1.0)


def test_no_face_and_bad_input(model):
    assert model.descriptor(np.full((80, 80, 3), 128, np.uint8)) is None
    assert model.similarity(np.zeros((80, 80, 3), np.uint8), skimage.data.astronaut()) is None
    with pytest.raises(InputError, match="uint8 RGB"):
        model.descriptor(np.zeros((80, 80), np.float32))
