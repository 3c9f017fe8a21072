"""Every Python snippet of README.md and docs/*.md runs as written after a bare ``import psohead``,
on the bundled model: the docs cannot drift from the code. The snippets of one page run in order,
in a fresh folder holding the files they name (two photos, an official-format snapshot, and a
reconstruction in out/me). Step counts and output sizes are cut so the suite stays fast; the code
paths are the real ones."""
import re
import shutil
from pathlib import Path

import pytest

from conftest import require_shared

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)


def snippets(page: Path) -> list[str]:
    return SNIPPET.findall(page.read_text())


def test_the_docs_have_snippets():
    with_code = [p.name for p in PAGES if snippets(p)]
    assert {"README.md", "reconstruct.md", "checkpoints.md", "export.md"} <= set(with_code)


@pytest.fixture(scope="module")
def quick_presets():
    """The named presets with 1 + 1 steps and tiny outputs (a module-wide patch)."""
    from psohead.inversion import presets

    saved = dict(presets.PRESETS)
    for name, p in saved.items():
        presets.PRESETS[name] = p.override(stage1_steps=1, stage2_steps=1, stage1_w_avg_samples=200,
                                           outputs_video_frames=2, outputs_mesh_resolution=32)
    yield
    presets.PRESETS.update(saved)


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory, quick_presets):
    import psohead

    out = tmp_path_factory.mktemp("docs") / "me"
    psohead.reconstruct(ROOT / "examples" / "astronaut.jpg", out, progress=False)
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)], ids=lambda p: p.name)
def test_snippets_run(page, tmp_path, monkeypatch, quick_presets, reconstruction):
    pytest.importorskip("dlib")
    shutil.copy(ROOT / "examples" / "astronaut.jpg", tmp_path / "photo.jpg")
    shutil.copy(ROOT / "examples" / "man.jpg", tmp_path / "photo2.jpg")
    shutil.copy(require_shared("fixtures", "panohead_small_official_format.pkl"), tmp_path / "network-snapshot.pkl")
    shutil.copytree(reconstruction, tmp_path / "out" / "me")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(snippets(page)):
        try:
            exec(compile(code, f"{page.name} snippet {i + 1}", "exec"), namespace)
        except Exception as err:  # name the snippet that broke
            raise AssertionError(f"{page.name} snippet {i + 1} failed: {type(err).__name__}: {err}") from err
