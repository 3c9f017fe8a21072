"""report.html in real Chromium over file://: the embedded 3D viewer loads and draws, nothing is fetched."""
import numpy as np
import pytest
import trimesh

from browser import drawn_fraction, screenshot_array
from psohead.export.report import format_seconds, reconstruction_facts, write_report

# Listens from before the page's own scripts run, so a load that fires early is not missed.
RECORD_LOAD = """window.__viewer = new Promise((resolve) => {
  document.addEventListener('load', (e) => { if (e.target.localName === 'model-viewer') resolve('load'); }, true);
  document.addEventListener('error', (e) => {
    if (e.target.localName === 'model-viewer') resolve('error ' + JSON.stringify(e.detail)); }, true);
});"""
WAIT_LOAD = "() => Promise.race([window.__viewer, new Promise((r) => setTimeout(() => r('timeout'), 30000))])"


def _red_ball(path):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    mesh.visual.vertex_colors = np.tile([220, 30, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    mesh.export(path)
    return path


def test_report_viewer_loads_and_draws_offline(tmp_path, browser_page):
    photo = np.zeros((900, 600, 3), np.uint8)
    photo[:, :, 1] = 180
    summary = {"settings": {"network": "default", "device": "cpu", "precision": "fp32",
                            "preset": {"name": "fast", "stage1": {"steps": 120}, "stage2": {"steps": 80}}},
               "back": {"requested": "auto", "used": "prior"},
               "timings": {"stage1": 61.234, "stage2": 40.06, "inversion_total": 101.3, "write_video": 8.04}}
    report = write_report(tmp_path / "report.html", model=_red_ball(tmp_path / "head.glb"), photo=photo,
                          summary=summary)
    page = browser_page.page
    page.add_init_script(RECORD_LOAD)
    page.goto(report.as_uri())
    assert page.evaluate(WAIT_LOAD) == "load"
    page.wait_for_timeout(500)  # the first frame after load
    pixels = screenshot_array(page.locator("model-viewer"))
    covered = drawn_fraction(pixels)
    assert 0.03 < covered < 0.9, covered  # a ball in the middle, not a blank or fully covered canvas
    centre = pixels[pixels.shape[0] // 2 - 5:pixels.shape[0] // 2 + 5, pixels.shape[1] // 2 - 5:pixels.shape[1] // 2 + 5]
    r, g, b = centre.reshape(-1, 3).mean(0)
    assert r > 2 * g and r > 2 * b, (r, g, b)  # the mesh's vertex colour reached the screen
    # the photo is shown downscaled to the report's bound, aspect kept
    size = page.evaluate("() => [document.getElementById('photo').naturalWidth, document.getElementById('photo').naturalHeight]")
    assert size == [427, 640]
    facts = page.locator("table.facts").inner_text()
    assert "fast (120 + 80 steps)" in facts and "prior (asked: auto)" in facts and "cpu, fp32" in facts
    assert "109 s (1.8 min)" in facts  # inversion + writing
    assert browser_page.outside() == [] and browser_page.errors == []
    assert [u for u in browser_page.requests if not u.startswith("data:")] == [report.as_uri()]


def test_report_durations_round_to_what_matters():
    assert [format_seconds(v) for v in (0.01, 0.234, 9.96, 12.6, 250.0)] == \
        ["< 0.1 s", "0.2 s", "10 s", "13 s", "250 s (4.2 min)"]
    assert reconstruction_facts({"settings": {"device": "cuda"}}) == {"device": "cuda"}
    with pytest.raises(ValueError):
        format_seconds("soon")
