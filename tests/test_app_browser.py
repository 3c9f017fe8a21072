"""``psohead app`` end to end in real Chromium: the bundled model with a few steps, a real photo,
the live preview while it runs, the 3D viewer drawing the head, downloads, bad uploads, what the
server serves, the offline report."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import drawn_fraction, screenshot_array
from conftest import REPO

pytest.importorskip("gradio")
SAMPLE = REPO / "examples" / "astronaut.jpg"
# The live preview once it shows a loaded picture while the job still runs (checked in one go, so
# that the results cannot arrive in between): its size, the spread of its pixel values, downloads.
LIVE_PREVIEW = """() => {
  const img = document.querySelector('#live img');
  if (!img || !img.complete || !img.naturalWidth) return null;
  if (!document.querySelector('#status').innerText.startsWith('Working')) return null;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sq = 0;
  for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; }
  const n = d.length / 4;
  return {width: c.width, height: c.height, std: Math.sqrt(sq / n - (sum / n) ** 2),
          downloads: document.querySelectorAll('#downloads a[download]').length};
}"""
# The first look (the encoder's preview) in the turntable and views slots while the job still runs.
FIRST_LOOK = """() => {
  const v = document.querySelector('#video');
  if (!v || !v.innerText.includes('first look')) return null;
  if (!document.querySelector('#status').innerText.startsWith('Working')) return null;
  const video = v.querySelector('video'), views = document.querySelector('#views img');
  return video && video.src && views && views.complete ? {video: video.src, views: views.naturalWidth} : null;
}"""
RECORD_LOAD = """window.__viewer = new Promise((resolve) => {
  document.addEventListener('load', (e) => { if (e.target.localName === 'model-viewer') resolve('load'); }, true);
});"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The real CLI in a subprocess: bundled model, 2 + 2 steps, small video and mesh."""
    work = tmp_path_factory.mktemp("appwork")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log = open(work.parent / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "psohead", "app", "--port", str(port), "--work-dir", str(work),
                             "--stage1-steps", "2", "--stage2-steps", "2", "--set", "outputs.video_frames=12",
                             "--set", "outputs.mesh_resolution=64", "--max-upload-mb", "1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (work.parent / "app.log").read_text()
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start in 120 s")
    yield url, work
    proc.terminate()
    proc.wait(30)
    log.close()


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("#photo input[type=file]", state="attached")


def _upload(page, path):
    page.locator("#photo input[type=file]").set_input_files(str(path))


def _status(page, timeout_ms=180_000):
    """The status line once it says the job ended (done, or a message)."""
    page.wait_for_function("() => { const t = document.querySelector('#status').innerText;"
                           " return t.startsWith('Done') || t.includes('⚠') || t.startsWith('Cancelled'); }",
                           timeout=timeout_ms)
    return page.locator("#status").inner_text()


def test_photo_to_head_in_the_browser(app_server, browser_page, tmp_path):
    import trimesh

    url, work = app_server
    page = browser_page.page
    _open(page, url)
    _upload(page, SAMPLE)
    page.wait_for_selector("#preview img")
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Working')")
    # the head being fitted shows before the results: the bundled model's front render (128 px)
    live = page.wait_for_function(LIVE_PREVIEW, timeout=120_000).json_value()
    assert live["width"] == live["height"] == 128 and live["downloads"] == 0, live
    assert live["std"] > 10, live  # a picture of a head, not a blank square
    page.screenshot(path=str(tmp_path / "app_running.png"), full_page=True)
    # the encoder's preview fills the turntable and views while the full reconstruction runs
    first = page.wait_for_function(FIRST_LOOK, timeout=120_000).json_value()
    assert first["views"] == 4 * 128 and first["video"].endswith("turntable.mp4"), first
    page.screenshot(path=str(tmp_path / "app_first_look.png"), full_page=True)
    assert _status(page).startswith("Done"), page.locator("#status").inner_text()
    assert "first look" not in page.locator("#video").inner_text()  # the full run's own turntable now
    page.locator("#live").wait_for(state="hidden", timeout=10_000)  # the results took its place

    page.wait_for_selector("#viewer canvas", timeout=30_000)
    drawn = 0.0
    for _ in range(20):  # the viewer fetches the GLB and draws a few frames later
        page.wait_for_timeout(500)
        drawn = drawn_fraction(screenshot_array(page.locator("#viewer canvas")))
        if drawn > 0.05:
            break
    assert 0.05 < drawn < 0.9, drawn  # a head on the background, not a blank canvas
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)

    links = page.locator("#downloads a[download]")
    names = [links.nth(i).get_attribute("download") for i in range(links.count())]
    assert {"head.glb", "head.obj", "head.ply", "turntable.mp4", "report.html"} <= set(names), names
    assert any(re.fullmatch(r"psohead-[0-9a-f]{16}\.zip", n) for n in names), names
    with page.expect_download() as dl:
        links.nth(names.index("head.glb")).click()
    glb = tmp_path / "head.glb"
    dl.value.save_as(glb)
    mesh = trimesh.load(glb, force="mesh")
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert browser_page.outside() == [], browser_page.outside()

    # the same job's report.html works from disk with no network: its viewer loads the head
    report = next(work.glob("job-*/out/report.html"))
    page.add_init_script(RECORD_LOAD)
    page.goto(report.as_uri())
    assert page.evaluate("() => Promise.race([window.__viewer, new Promise(r => setTimeout(() => r('timeout'), 30000))])") == "load"
    page.wait_for_timeout(500)
    assert drawn_fraction(screenshot_array(page.locator("model-viewer"))) > 0.05
    assert browser_page.outside() == [] and browser_page.errors == []


def _bomb(path):
    """A PNG whose header declares 400 megapixels (a few kB on disk)."""
    Image.new("1", (20000, 20000)).save(path)
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda p: (p.write_bytes(b"this is not a photo\n" * 10), p)[1], "not a readable image"),
    (_bomb, "40 MP"),
    (lambda p: (Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(p), p)[1], "face"),
])
def test_bad_upload_gives_one_readable_message(app_server, browser_page, tmp_path, make, expected):
    url, _ = app_server
    page = browser_page.page
    _open(page, url)
    _upload(page, make(tmp_path / "upload.png"))
    page.click("#run")
    text = _status(page, 60_000)
    assert "⚠" in text and expected in text, text
    body = page.locator("body").inner_text()
    assert "Traceback" not in body and "Error" not in body.replace("⚠", "")


def test_too_large_upload_is_refused_in_the_page(app_server, browser_page, tmp_path):
    url, work = app_server
    page = browser_page.page
    _open(page, url)
    big = tmp_path / "big.jpg"
    big.write_bytes(SAMPLE.read_bytes() + os.urandom(1_200_000))  # over the server's 1 MB limit
    _upload(page, big)
    # Gradio refuses it before it is stored, with one toast that names the file and the limit
    page.wait_for_function("() => document.body.innerText.includes('exceed the maximum allowed size of 1')",
                           timeout=20_000)
    assert "big.jpg" in page.locator("body").inner_text()
    assert "Traceback" not in page.locator("body").inner_text()
    assert not any(p.stat().st_size == big.stat().st_size for p in work.rglob("*") if p.is_file())  # never stored


def test_serves_nothing_but_its_own_files(app_server):
    url, work = app_server
    for target in ("/etc/passwd", REPO / "pyproject.toml", REPO / "src" / "psohead" / "__init__.py",
                   work.parent / "app.log"):
        for route in ("gradio_api/file=", "file="):
            try:
                with urllib.request.urlopen(f"{url}{route}{target}", timeout=5) as r:
                    status, body = r.status, r.read()
            except urllib.error.HTTPError as err:
                status, body = err.code, b""
            assert status >= 400 or b"root:" not in body and b"psohead" not in body, (route, target, status)
