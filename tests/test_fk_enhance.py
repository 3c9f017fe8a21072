"""FK-Enhance builder: quality checks, output format, resume, real back photos, errors."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fk_standins import BrightD, ShapeG, brightness, kind
from psohead import camera
from psohead.errors import InputError
from psohead.training.fk_enhance import FKEnhanceConfig, build_fk_enhance, candidate
from psohead.training.fk_filters import FKFilters, FaceDetector, mask_reasons, mask_stats, mirror_similarity

MAN = Path(__file__).resolve().parents[1] / "examples" / "man.jpg"
LOOSE = FKFilters(min_area=0, max_area=1, min_main_blob=0, max_top_border=1, max_side_border=1, keep_top=1)


def _disc(res=64, cy=0.55, r=0.3):
    yy, xx = np.mgrid[:res, :res]
    return (((yy - res * cy) ** 2 + (xx - res / 2) ** 2 < (res * r) ** 2) * 255).astype(np.uint8)


def test_mask_checks_analytic():
    res = 64
    assert mask_reasons(mask_stats(_disc()), FKFilters()) == []
    empty = mask_stats(np.zeros((res, res), np.uint8))
    assert empty["area"] == 0 and mask_reasons(empty, FKFilters()) == ["mask_too_small"]
    full = mask_stats(np.full((res, res), 255, np.uint8))
    assert full == {"area": 1.0, "main_blob": 1.0, "border_top": 1.0, "border_side": 1.0}
    assert mask_reasons(full, FKFilters()) == ["mask_too_large", "mask_top_border", "mask_side_border"]
    two = _disc(r=0.25)
    two[:, : res // 2 + 2] = 0
    two = np.maximum(two, _disc(cy=0.3, r=0.12)[:, ::-1] * (np.arange(res) < res // 2 - 4))  # a second blob
    stats = mask_stats(two)
    assert 0.5 < stats["main_blob"] < 0.95 and "mask_blobs" in mask_reasons(stats, FKFilters())
    top = mask_stats(_disc(cy=0.3, r=0.35))  # the top of the head cut by the frame
    assert top["border_top"] > 0.35 and mask_reasons(top, FKFilters()) == ["mask_top_border"]
    speck = _disc()
    speck[2, 2] = 255  # a one-pixel speck does not make two heads
    assert mask_reasons(mask_stats(speck), FKFilters()) == []


def test_mirror_similarity_identity_flip_and_noise():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    m = _disc()
    assert mirror_similarity(img, m, img, m) == pytest.approx(1.0, abs=1e-3)
    assert mirror_similarity(img, m, img[:, ::-1].copy(), m[:, ::-1].copy()) == pytest.approx(1.0, abs=1e-3)
    other = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert abs(mirror_similarity(img, m, other, m)) < 0.2
    assert mirror_similarity(img, np.zeros_like(m), img, m) == 0.0  # no common foreground


SYNTH_YAWS = (0.0, math.pi - 0.35, math.pi + 0.35, 0.3, math.pi)


@pytest.fixture(scope="module")
def synth_views():
    """SynthHeads 0-3 at the yaws above, 128 px: (rgb [4,5,R,R,3], mask [4,5,R,R])."""
    from psohead.synth.preview import render_views
    rgb, mask = render_views([0, 1, 2, 3], list(SYNTH_YAWS), res=128)[:2]
    return rgb, mask


def test_mirror_similarity_separates_synth_backs_from_face_copies(synth_views):
    """Back views stay below the default threshold; a face seen 17 degrees off (the weakest copy
    of the front a Janus back would show) lies above it."""
    rgb, mask = synth_views
    limit = FKFilters().mirror_max
    for h in range(4):
        front = (rgb[h, 0], mask[h, 0])
        for v in (1, 2, 4):
            assert mirror_similarity(rgb[h, v], mask[h, v], *front) < limit
        assert mirror_similarity(rgb[h, 3], mask[h, 3], *front) > limit


def test_face_detector_rejects_front_photo_keeps_back_view(synth_views):
    pytest.importorskip("dlib")
    det = FaceDetector("dlib")
    man = np.asarray(Image.open(MAN).convert("RGB").resize((128, 128), Image.LANCZOS))
    assert det.is_face(det.score(man), FKFilters())
    rgb, _ = synth_views
    for h in range(4):
        assert det.is_face(det.score(rgb[h, 0]), FKFilters())  # a synthetic face is a face
        for v in (1, 2, 4):
            assert not det.is_face(det.score(rgb[h, v]), FKFilters())  # the back of the head is not


def _expected(cfg, n):
    """Outcome per candidate from the stand-in's rules alone."""
    zs = [candidate(cfg.seed, i, ShapeG.z_dim, cfg)[0] for i in range(n)]
    reason = {"empty": "mask_too_small", "full": "mask_too_large", "janus": "front_copy", "disc": None}
    return [kind(z) for z in zs], [reason[kind(z)] for z in zs], [brightness(z) for z in zs]


def test_builder_filters_follow_standin_truth(tmp_path):
    from psohead.io.dataset import HeadDataset
    cfg = FKEnhanceConfig(n=32, seed=3, face_check="mirror", filters=FKFilters(keep_top=0.5))
    kinds, reasons, bright = _expected(cfg, cfg.n)
    assert all(kinds.count(k) >= 3 for k in ("disc", "empty", "full", "janus"))
    report = build_fk_enhance(ShapeG(), tmp_path / "fk", cfg, discriminator=BrightD(), device="cpu", progress=False)
    discs = [i for i, k in enumerate(kinds) if k == "disc"]
    keep = sorted(discs, key=lambda i: -bright[i])[:math.ceil(0.5 * len(discs))]
    items = {r["index"]: r for r in report["items"]}
    for i in range(cfg.n):
        expect = reasons[i] or (None if i in keep else "d_score")
        assert items[i]["reason"] == expect, (i, kinds[i])
    ds = HeadDataset(tmp_path / "fk")
    assert sorted(ds.names) == [f"render/{i:06d}.png" for i in sorted(keep)]
    for j, name in enumerate(ds.names):  # the stored pixels are the renders of those latents
        img, mask, _ = ds[j]
        i = int(name[7:13])
        assert abs(img.float().mean().item() / 127.5 - 1 - bright[i]) < 0.01
        est, truth = mask[0].numpy() >= 128, _disc(64) >= 128
        assert (est & truth).sum() / (est | truth).sum() > 0.9
    counts = report["counts"]
    assert counts == {"rendered": 32, "rendered_kept": len(keep), "real": 0, "real_kept": 0, "kept": len(keep)}
    assert report["rejected"]["mask_too_small"] == kinds.count("empty")
    assert report["rejected"]["front_copy"] == kinds.count("janus")
    assert report["rejected"]["d_score"] == len(discs) - len(keep)
    assert report["failed_checks"]["mask_top_border"] == kinds.count("full")
    assert report["d_score"]["threshold"] == pytest.approx(min(bright[i] for i in keep), abs=1e-4)
    assert json.loads((tmp_path / "fk" / "fk_report.json").read_text())["counts"] == counts
    assert not (tmp_path / ".fk.fk-work").exists()


def test_builder_resumes_and_refilters_from_cache(tmp_path):
    cfg = FKEnhanceConfig(n=12, batch=4, face_check="mirror", filters=FKFilters(keep_top=1))
    with pytest.raises(KeyboardInterrupt):
        build_fk_enhance(ShapeG(fail_after_calls=2), tmp_path / "fk", cfg, device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / ".fk.fk-work").glob("chunk*.json")) == ["chunk000000.json",
                                                                                    "chunk000001.json"]
    assert not (tmp_path / "fk").exists()
    strict = FKEnhanceConfig(n=12, batch=4, face_check="mirror", filters=FKFilters(min_area=0.99, max_area=1))
    G = ShapeG()
    with pytest.raises(InputError, match="no image passed the filters"):
        build_fk_enhance(G, tmp_path / "fk", strict, device="cpu", progress=False)
    assert G.calls == 1  # only the chunk the killed run had not finished
    G = ShapeG()
    report = build_fk_enhance(G, tmp_path / "fk", cfg, device="cpu", progress=False)
    assert G.calls == 0  # every render came from the cache
    kinds, reasons, _ = _expected(cfg, 12)
    assert [r["reason"] for r in report["items"]] == reasons
    build_fk_enhance(ShapeG(), tmp_path / "other", cfg, device="cpu", progress=False, keep_work=True)
    shutil.rmtree(tmp_path / "other")
    with pytest.raises(InputError, match="other settings"):
        build_fk_enhance(ShapeG(), tmp_path / "other", FKEnhanceConfig(n=12, seed=5, face_check="mirror"),
                         device="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A random tiny-preset G and D as psohead network files."""
    from psohead.checkpoint.safetensors_io import save_network
    from psohead.training.loop import build_discriminator, build_generator
    from psohead.training.presets import preset
    root = tmp_path_factory.mktemp("tiny_nets")
    G_cfg, D_cfg, _ = preset("tiny")
    torch.manual_seed(0)
    G, D = build_generator(G_cfg), build_discriminator(D_cfg)
    D.config = D_cfg
    return save_network(G, root / "G.safetensors"), save_network(D, root / "D.safetensors")


def test_builder_tiny_network_output_format(tmp_path, tiny_files):
    """CLI on a real (random) tiny network: official dataset layout, back cameras, D scores, and
    the reconstruct --back fk consumer reads it."""
    from psohead.cli import main
    from psohead.inversion.back.fk import fk_view
    from psohead.io.dataset import HeadDataset
    g_path, d_path = tiny_files
    out = tmp_path / "bank"
    rc = main(["fk-enhance", "--network", str(g_path), "--discriminator", str(d_path), "--out", str(out), "--n", "6",
               "--device", "cpu", "--min-area", "0", "--max-area", "1", "--min-main-blob", "0", "--max-top-border", "1",
               "--max-side-border", "1", "--d-keep", "0.5", "--face-check", "mirror", "--quiet"])
    assert rc == 0
    raw = json.loads((out / "images" / "dataset.json").read_text())["labels"]
    assert len(raw) == 3 and all(len(v) == 25 and all(isinstance(x, str) for x in v) for _, v in raw)
    ds = HeadDataset(out)
    assert ds.resolution == 128 and len(ds) == 3
    yaw, pitch, radius = camera.yaw_pitch_from_label(ds.raw_labels)
    off = torch.remainder(yaw - math.pi + math.pi, 2 * math.pi) - math.pi
    assert off.abs().max() <= math.radians(20) + 1e-4 and pitch.abs().max() <= math.radians(10) + 1e-4
    assert torch.allclose(radius, torch.full_like(radius, camera.RADIUS), atol=1e-4)
    report = json.loads((out / "fk_report.json").read_text())
    assert report["d_score"]["available"] and len(report["items"]) == 6
    kept = sorted(r["d_score"] for r in report["items"] if r["kept"])
    dropped = [r["d_score"] for r in report["items"] if r["reason"] == "d_score"]
    assert len(dropped) == 3 and min(kept) >= max(dropped)
    _, record = fk_view(out, torch.zeros(1, 3, 128, 128), None, torch.ones(1, 1, 128, 128))
    assert record["item"] in ds.names


def test_real_backs_import(tmp_path, synth_views):
    """A back photo with its mask file is kept with that mask; one on a plain backdrop gets a
    border matte; the man.jpg face photo is rejected by the face check."""
    pytest.importorskip("dlib")
    from psohead.io.dataset import HeadDataset
    rgb, mask = (a[[0, 3]][:, [4]] for a in synth_views)
    folder = tmp_path / "backs"
    folder.mkdir()
    Image.fromarray(rgb[0, 0]).save(folder / "a.png")
    Image.fromarray(mask[0, 0]).save(folder / "a_mask.png")
    wide = np.concatenate([np.repeat(rgb[1, 0][:, :1], 16, 1), rgb[1, 0], np.repeat(rgb[1, 0][:, -1:], 16, 1)], 1)
    Image.fromarray(wide).save(folder / "b.jpg", quality=98)  # 160x128 on the backdrop, no mask file
    Image.open(MAN).convert("RGB").resize((256, 256)).save(folder / "man.png")

    class BigShapeG(ShapeG):
        img_resolution = 128

    cfg = FKEnhanceConfig(n=1, face_check="detector", real_backs=str(folder), real_yaw_deg=175.0)
    report = build_fk_enhance(BigShapeG(), tmp_path / "fk", cfg, device="cpu", progress=False)
    items = {r["name"]: r for r in report["items"]}
    assert items["real/a"]["kept"] and items["real/a"]["mask_source"] == "file"
    assert items["real/b"]["kept"] and items["real/b"]["mask_source"] == "border"
    assert "face_detected" in items["real/man"]["failed"] and not items["real/man"]["kept"]
    ds = HeadDataset(tmp_path / "fk")
    names = {n: j for j, n in enumerate(ds.names)}
    img, m, lab = ds[names["real/a.png"]]
    assert np.array_equal(m[0].numpy(), mask[0, 0]) and np.array_equal(img.permute(1, 2, 0).numpy(), rgb[0, 0])
    assert camera.yaw_pitch_from_label(lab)[0].abs().item() == pytest.approx(math.radians(175), abs=1e-4)
    _, m, _ = ds[names["real/b.png"]]
    est, truth = m[0].numpy() >= 128, mask[1, 0] >= 128
    assert (est & truth).sum() / (est | truth).sum() > 0.85
    assert report["counts"]["real"] == 3 and report["counts"]["real_kept"] == 2


@pytest.mark.parametrize("case", ["n0", "no_network", "empty_folder", "out_not_empty", "face_check", "keep_top",
                                  "d_resolution", "no_detector", "network_is_d"])
def test_fk_errors(tmp_path, tiny_files, monkeypatch, capsys, case):
    from psohead.cli import main
    g_path, d_path = tiny_files
    args = ["fk-enhance", "--network", str(g_path), "--out", str(tmp_path / "o"), "--n", "2", "--device", "cpu"]
    expect = {"n0": "--n 0", "no_network": "no such file", "empty_folder": "no images found",
              "out_not_empty": "not empty", "face_check": None, "keep_top": "--d-keep", "d_resolution": "judges",
              "no_detector": "needs dlib or mediapipe", "network_is_d": "not a generator"}[case]
    if case == "n0":
        args[-3] = "0"
    elif case == "no_network":
        args[2] = str(tmp_path / "missing.safetensors")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args += ["--real-backs", str(tmp_path / "empty")]
    elif case == "out_not_empty":
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / "x").write_text("x")
    elif case == "face_check":
        with pytest.raises(SystemExit):  # argparse refuses the choice
            main(args + ["--face-check", "nose"])
        return
    elif case == "keep_top":
        args += ["--d-keep", "0"]
    elif case == "d_resolution":
        from psohead.checkpoint.safetensors_io import save_network
        from psohead.training.loop import build_discriminator
        from psohead.training.presets import preset
        D_cfg = preset("tiny")[1].replace(img_resolution=64, seg_resolution=64)
        D = build_discriminator(D_cfg)
        D.config = D_cfg
        args += ["--discriminator", str(save_network(D, tmp_path / "D64.safetensors"))]
    elif case == "no_detector":
        import psohead.training.fk_filters as filters
        monkeypatch.setattr(filters, "available_detector", lambda: None)
        args += ["--face-check", "detector"]
    elif case == "network_is_d":
        args[2] = str(d_path)
    assert main(args) == 1
    text = capsys.readouterr().err
    assert expect in text and text.count("\n") == 1, text
    assert not (tmp_path / ".o.fk-work").exists()
