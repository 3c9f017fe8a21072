"""Bad input (issue 23): one clear line and a non-zero exit, never a traceback or a silent wrong
result; each case as a user types it."""
import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from psohead import camera
from psohead.cli import build_parser, finite_float, main
from psohead.errors import CheckpointError, InputError, LabelError


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    from inversion_tiny import tiny_generator

    from psohead.checkpoint.safetensors_io import save_network

    path = tmp_path_factory.mktemp("net") / "tiny.safetensors"
    save_network(tiny_generator(), path)
    return path


# --------------------------------------------------------------------------------------------
# Networks

def test_checkpoint_with_nan_weights_is_refused_at_load_and_by_info(tmp_path, capsys):
    from inversion_tiny import tiny_generator

    from psohead.api import load_generator
    from psohead.checkpoint.safetensors_io import save_network

    G = tiny_generator()
    name = "backbone.synthesis.b4.conv1.bias"
    with torch.no_grad():
        dict(G.named_parameters())[name][3] = float("nan")
        dict(G.named_parameters())["decoder.net.0.weight"].fill_(float("inf"))
    path = save_network(G, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=f"tensor {name} holds 1 NaN"):
        load_generator(path)
    assert main(["info", str(path)]) == 1
    _one_line_error(capsys, name, "NaN or infinite")
    assert main(["render", "--network", str(path), "--seed", "0", "--yaws", "0", "--out", str(tmp_path / "a.png")]) == 1
    _one_line_error(capsys, name)
    assert not (tmp_path / "a.png").exists()


def test_checkpoint_whose_resolution_does_not_fit_its_superresolution_head(tmp_path, capsys, tiny_net):
    from psohead.api import read_checkpoint
    from psohead.checkpoint.safetensors_io import write_network

    net = read_checkpoint(tiny_net)
    bad = write_network(tmp_path / "bad.safetensors", net.kind, net.class_name,
                        {**net.config, "img_resolution": 256}, net.state_dict)
    assert main(["info", str(bad)]) == 1
    _one_line_error(capsys, "SuperresolutionHybrid2X produces 128", "img_resolution=256")


# --------------------------------------------------------------------------------------------
# Numbers on the command line

def test_every_number_option_refuses_nan_and_inf(capsys):
    """--truncation nan rendered black; every float option of every verb now takes finite numbers only."""
    parser = build_parser()
    floats = []

    def walk(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.type is not None and action.type in (float, finite_float):
                floats.append(action)

    walk(parser)
    assert len(floats) > 20 and all(a.type is finite_float for a in floats)
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(SystemExit) as stop:
            main(["render", "--seed", "0", f"--truncation={value}", "--out", "x.png"])
        assert stop.value.code == 2
        assert f"expected a finite number, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,fragment", [
    (["render", "--seed", "0", "--yaws", "0,nan", "--out", "x.png"], "--yaws must be finite"),
    (["render", "--seed", "0", "--pitch", "95", "--out", "x.png"], "--pitch 95"),
    (["render", "--seed", "0", "--batch", "0", "--out", "x.png"], "--batch 0"),
    (["video", "--seed", "0", "--frames", "0", "--out", "x.mp4"], "--frames 0"),
    (["video", "--seed", "0", "--fps", "0", "--out", "x.mp4"], "--fps 0"),
    (["mesh", "--seed", "0", "--level", "nan", "--out", "x.ply"], "level must be 'auto' or a positive number"),
    (["mesh", "--seed", "0", "--level", "inf", "--out", "x.ply"], "level must be 'auto' or a positive number"),
    (["mesh", "--seed", "0", "--resolution", "1", "--out", "x.ply"], "resolution must be an integer >= 8, got 1"),
    # these three allocated until killed (a 10^15-point grid, 10^8 frames' cameras) or gave a traceback
    (["mesh", "--seed", "0", "--resolution", "100000", "--out", "x.ply"], "resolution must be at most 1024, got 100000"),
    (["video", "--seed", "0", "--frames", "100000000", "--out", "x.mp4"], "--frames 100000000: must be at most"),
    (["reconstruct", "x.jpg", "--out", "o", "--set", "outputs.video_frames=100000000"], "outputs.video_frames"),
    (["render", "--seed", "-1", "--out", "x.png"], "--seed -1: seeds must lie in 0..2^32-1"),
    (["video", "--seed", str(2 ** 32), "--out", "x.mp4"], f"--seed {2 ** 32}: seeds must lie"),
    (["generate", "--truncation-cutoff", "-1", "--outdir", "g"], "--truncation-cutoff"),
    (["synth", "orbit", "--ids", "-1", "--out", "o"], "--ids -1"),
    (["synth", "orbit", "--ids", "1", "--res", "7", "--out", "o"], "--res 7"),
    (["synth", "orbit", "--ids", "1", "--views", "0", "--out", "o"], "--views 0"),
    (["synth", "orbit", "--ids", "1", "--pitches", "2", "--out", "o"], "--pitches"),
    (["synth", "preview", "--ids", "-3", "--out", "p.png"], "--ids -3"),
    (["synth", "preview", "--res", "7", "--out", "p.png"], "--res 7"),
])
def test_bad_numbers_fail_at_once_with_one_line(argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    _one_line_error(capsys, fragment)
    assert list(tmp_path.iterdir()) == []


def test_set_of_a_field_is_not_dropped_by_its_unused_shortcut_option(tmp_path, capsys):
    """`--set stage1.steps=N` was replaced by the unset --stage1-steps (None), so the run took the
    preset's steps without a word, and `--set stage1.steps=nan` ran a whole default reconstruction."""
    from psohead.cli.reconstruct import preset_overrides
    from psohead.inversion.presets import resolve_preset

    parse = build_parser().parse_args
    for verb in (["reconstruct", "x.jpg", "--out", "o"], ["reconstruct-batch", "x.jpg", "--out", "o"], ["app"]):
        preset = resolve_preset("fast", preset_overrides(parse([*verb, "--set", "stage1.steps=7",
                                                                "--set", "stage2.steps=3"])))
        assert (preset.stage1.steps, preset.stage2.steps) == (7, 3), verb
    both = parse(["reconstruct", "x.jpg", "--out", "o", "--set", "stage1.steps=7", "--stage1-steps", "9"])
    assert resolve_preset("fast", preset_overrides(both)).stage1.steps == 9  # the shortcut, given, wins
    photo = Path(__file__).resolve().parents[1] / "examples" / "man.jpg"
    assert main(["reconstruct", str(photo), "--out", str(tmp_path / "out"), "--set", "stage1.steps=nan"]) == 1
    _one_line_error(capsys, "setting stage1.steps: expected an integer, got 'nan'")
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_absurd_ranges_before_building_them(tmp_path, monkeypatch, capsys):
    """`generate --seeds 0-100000000` grew by 400 MB/s. Run where memory is capped at 1 GiB, so a
    regression fails here instead of filling the machine."""
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30)); "
            "from psohead.cli.networks import parse_seeds; parse_seeds('0-4294967295')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "asks for 4,294,967,296 seeds; at most 100,000 per run" in proc.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("psohead.cli.networks.MAX_SEEDS", 10)
    assert main(["generate", "--seeds", "0-5,3-20", "--outdir", "g"]) == 1  # counted over every part
    _one_line_error(capsys, "asks for 24 seeds; at most 10 per run")
    assert list(tmp_path.iterdir()) == []


def test_generate_streams_and_leaves_out_the_grid_beyond_its_limit(tiny_net, tmp_path, monkeypatch, capsys):
    from psohead.cli import networks

    monkeypatch.setattr(networks, "GRID_MAX_SEEDS", 2)
    out = tmp_path / "g"
    assert main(["generate", "--network", str(tiny_net), "--seeds", "0-2", "--yaw", "0", "--outdir", str(out),
                 "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".psohead", "seed0000_yaw0_pitch0.png",
                                                    "seed0001_yaw0_pitch0.png", "seed0002_yaw0_pitch0.png"]
    assert "no grid.png: more than 2 seeds" in capsys.readouterr().out
    assert main(["generate", "--network", str(tiny_net), "--seeds", "0-1", "--yaw", "0,90", "--outdir", str(out),
                 "--quiet"]) == 0  # a rerun into its own folder, within the grid's limit
    assert Image.open(out / "grid.png").size == (2 * 128, 2 * 128)


@pytest.mark.parametrize("argv,fragment", [
    (["render", "--seed", "0", "--out", "{dir}"], "is a folder; give a file name ending in .jpg"),
    (["render", "--seed", "0", "--out", "{tmp}/x.xyz"], "unknown file type '.xyz'"),
    (["video", "--seed", "0", "--out", "{tmp}/x.gif"], "unknown file type '.gif'"),
    (["mesh", "--seed", "0", "--out", "{dir}"], "is a folder"),
    (["generate", "--outdir", "{file}"], "is a file, not a folder"),
    (["convert", "default", "{dir}"], "is a folder"),
])
def test_output_of_the_wrong_kind_fails_before_rendering(argv, fragment, tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("mine")
    argv = [a.format(dir=tmp_path / "dir", file=tmp_path / "file", tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    _one_line_error(capsys, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"] and not any((tmp_path / "dir").iterdir())


# --------------------------------------------------------------------------------------------
# Reconstruction inputs

def test_a_12000_pixel_photo_is_refused_from_its_header(tmp_path, capsys):
    """A 12000x12000 photo took 2-3.4 GB with only PIL's warning. The one image reader refuses it
    before decoding, at its default limit (a 1-bit PNG: 18 MB to make, a few kB on disk)."""
    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000)).save(big)
    assert main(["reconstruct", str(big), "--out", str(tmp_path / "out")]) == 1
    _one_line_error(capsys, "12000x12000 pixels (144 MP); the limit is 100 MP: downscale it first")
    assert [p.name for p in tmp_path.iterdir()] == ["big.png"]


def _crop(tmp_path, size=(64, 64)):
    crop = tmp_path / "crop.png"
    Image.new("RGB", size, (90, 100, 110)).save(crop)
    return crop


def test_extra_view_yaw_must_be_a_finite_number_of_degrees(tmp_path):
    from psohead.inversion.inputs import parse_extra_view

    crop = _crop(tmp_path)
    with pytest.raises(InputError, match="the yaw after ':' must be a number of degrees, got 'abc'"):
        parse_extra_view(f"{crop}:abc")
    for bad in ("1e9", "nan", "inf", "-400"):
        with pytest.raises(InputError, match="finite number of degrees in"):
            parse_extra_view(f"{crop}:{bad}")
    assert parse_extra_view(f"{crop}:-90") == (crop, pytest.approx(-math.pi / 2))
    odd = tmp_path / "a:b.png"  # a colon in the name itself
    Image.new("RGB", (8, 8)).save(odd)
    assert parse_extra_view(str(odd)) == (odd, None)
    with pytest.raises(InputError, match="file not found"):
        parse_extra_view(str(tmp_path / "missing.png:abc"))


def test_mask_must_fit_its_image(tmp_path):
    from psohead.inversion.inputs import prepare_input

    crop = _crop(tmp_path, (128, 128))
    label = camera.label_from_yaw_pitch(0.0)[0]
    for size, match in (((1, 1), "far too small"), ((128, 64), "another shape"), ((8, 8), "far too small")):
        Image.new("L", size, 255).save(tmp_path / "m.png")
        with pytest.raises(InputError, match=match):
            prepare_input(crop, label=label, mask=tmp_path / "m.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "m.png")  # half size: resized onto the crop
    assert prepare_input(crop, label=label, mask=tmp_path / "m.png").mask.size == (64, 64)
    (tmp_path / "masks").mkdir()
    Image.new("L", (1, 1), 255).save(tmp_path / "masks" / "crop.png")  # a mask found beside the crop
    with pytest.raises(InputError, match="far too small"):
        prepare_input(crop, label=label)


def test_mask_without_a_label_is_refused_not_ignored(tmp_path):
    from psohead.inversion.inputs import prepare_input

    crop = _crop(tmp_path)
    Image.new("L", (64, 64), 255).save(tmp_path / "m.png")
    with pytest.raises(InputError, match="only used with an aligned crop"):
        prepare_input(crop, mask=tmp_path / "m.png")


def test_landmarks_must_be_68_finite_points_of_an_aligned_crop(tmp_path):
    from psohead.inversion.inputs import prepare_input

    crop = _crop(tmp_path)
    label = camera.label_from_yaw_pitch(0.0)[0]
    points = np.stack([np.linspace(10, 50, 68), np.linspace(20, 40, 68)], 1)
    assert np.array_equal(prepare_input(crop, label=label, landmarks=points.tolist()).landmarks, points)
    for bad in (points[:67], points[:, :1], np.where(np.arange(68)[:, None] == 3, np.nan, points), "eyes"):
        with pytest.raises(InputError, match="expected 68"):
            prepare_input(crop, label=label, landmarks=bad)
    with pytest.raises(InputError, match="landmarks are only used with an aligned crop"):
        prepare_input(crop, landmarks=points)


@pytest.mark.parametrize("content", [{"labels": None}, {"labels": [["other.png", [0.0] * 25]]}, {"labels": []},
                                     {"labels": [["crop.png", None]]}])
def test_dataset_json_that_does_not_label_the_crop_is_an_error_not_a_recrop(tmp_path, content, monkeypatch):
    from psohead.inversion import inputs

    crop = _crop(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(content))
    monkeypatch.setattr("psohead.preprocess.align", lambda *a, **k: pytest.fail("re-cropped silently"))
    with pytest.raises(LabelError, match="dataset.json") as err:
        inputs.prepare_input(crop)
    assert "crop.png" in str(err.value)


# --------------------------------------------------------------------------------------------
# Datasets and training

def _dataset(root, n=2, res=16, mask_res=16):
    """A psohead-layout dataset written by hand (PIL + json)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    labels = []
    for i in range(n):
        Image.fromarray(np.full((res, res, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
        Image.new("L", (mask_res, mask_res), 255).save(root / "masks" / f"{i}.png")
        labels.append([f"{i}.png", camera.format_label(camera.label_from_yaw_pitch(0.3 * i)[0])])
    (root / "images" / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


def test_train_checks_mask_sizes_before_it_creates_the_run_folder(tmp_path, capsys):
    data = _dataset(tmp_path / "data", mask_res=8)
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--kimg", "0.004",
                 "--batch", "2", "--batch-gpu", "2", "--device", "cpu", "--no-progress"]) == 1
    _one_line_error(capsys, "mask is 8x8 but its image", "is 16x16")
    assert not out.exists()


def test_train_refuses_to_start_afresh_over_an_earlier_run(tmp_path, capsys):
    from psohead.training.snapshot import LATEST

    data = _dataset(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    (out / LATEST).write_bytes(b"an earlier run's snapshot")
    assert main(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--kimg", "0.004",
                 "--batch", "2", "--batch-gpu", "2", "--device", "cpu", "--no-progress"]) == 1
    _one_line_error(capsys, "already holds a run", "--resume")
    assert (out / LATEST).read_bytes() == b"an earlier run's snapshot"
