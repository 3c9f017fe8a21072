"""FAGE fine-tuning: batch mixing, network sources, a short fine-tune on the tiny preset, errors."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import require_shared
from psohead import camera
from psohead.training.loop import mix_batches


def _dataset(root, n, res, value, yaw):
    """n flat images of one grey value, disc masks, all at one yaw."""
    from psohead.io.dataset_writer import DatasetWriter
    yy, xx = np.mgrid[:res, :res]
    m = ((yy - res / 2) ** 2 + (xx - res / 2) ** 2 < (res * 0.3) ** 2).astype(np.uint8) * 255
    with DatasetWriter(root) as w:
        for i in range(n):
            w.add(f"{i:05d}", np.full((res, res, 3), value, np.uint8), m, camera.label_from_yaw_pitch(yaw, 0.05)[0])
    return root


def test_mix_batches_respects_ratio_over_many_draws(tmp_path):
    """Entries come from the FK loader with probability ratio, image, mask and label together."""
    from psohead.io.dataset import HeadDataset
    real = HeadDataset(_dataset(tmp_path / "real", 4, 8, 10, 0.0))
    fk = HeadDataset(_dataset(tmp_path / "fk", 4, 8, 240, math.pi))
    batch = 8
    real_b = next(iter(torch.utils.data.DataLoader(real, batch_size=batch, sampler=[0, 1, 2, 3] * 2)))
    fk_b = next(iter(torch.utils.data.DataLoader(fk, batch_size=batch, sampler=[0, 1, 2, 3] * 2)))
    torch.manual_seed(1)
    for ratio in (0.0, 0.3, 1.0):
        from_fk = total = 0
        for _ in range(1500):
            (img, mask, c), _ = mix_batches(real_b, fk_b, ratio)
            is_fk = img.flatten(1).float().mean(1) > 128       # told apart by their pixels alone
            back = camera.yaw_pitch_from_label(c)[0].abs() > 1.0
            assert torch.equal(is_fk, back) and mask.shape == (batch, 1, 8, 8)
            from_fk += int(is_fk.sum())
            total += batch
        sigma = math.sqrt(ratio * (1 - ratio) / total)
        assert abs(from_fk / total - ratio) <= 4 * sigma + 1e-9, (ratio, from_fk / total)


def test_network_sources_official_pickle_holds_g_and_d():
    from psohead.api import read_checkpoint
    from psohead.training.network_source import read_network_set
    pkl = require_shared("fixtures", "panohead_small_official_format.pkl")
    nets = read_network_set(pkl)  # one parse for all three networks
    assert nets.D_source == nets.source and nets.G_config.img_resolution == nets.D_config.img_resolution == 512
    for which, got in (("G_ema", nets.G_ema), ("G", nets.G), ("D", nets.D)):
        ref = read_checkpoint(pkl, which).state_dict
        assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A random tiny-preset G file (no D), a real dataset and an FK-Enhance set built from G."""
    from psohead.checkpoint.safetensors_io import save_network
    from psohead.training.fk_enhance import FKEnhanceConfig, build_fk_enhance
    from psohead.training.fk_filters import FKFilters
    from psohead.training.loop import build_generator
    from psohead.training.presets import preset
    root = tmp_path_factory.mktemp("fage")
    torch.manual_seed(0)
    g_path = save_network(build_generator(preset("tiny")[0]), root / "G.safetensors")
    data = _dataset(root / "data", 8, 32, 90, 0.2)
    loose = FKFilters(min_area=0, max_area=1, min_main_blob=0, max_top_border=1, max_side_border=1)
    build_fk_enhance(g_path, root / "fk", FKEnhanceConfig(n=4, face_check="none", filters=loose), device="cpu",
                     progress=False)
    return root, g_path, data, root / "fk"


def _args(root, g_path, data, fk, run, *extra):
    return ["finetune", "--network", str(g_path), "--data", str(data), "--fk", str(fk), "--out", str(run),
            "--preset", "tiny", "--device", "cpu", "--no-progress", "--tick-kimg", "0.004", *extra]


def test_finetune_writes_changed_loadable_network(tiny_setup, capsys):
    """One step (batch 2, every entry from FK at ratio 1): a fresh-D warning, a loadable network whose
    weights moved, the FK share in the log, and the run folder reads back as a network source."""
    from psohead.api import load_generator
    from psohead.checkpoint.safetensors_io import read_network
    from psohead.cli import main
    from psohead.training.network_source import read_network_set
    root, g_path, data, fk = tiny_setup
    run = root / "run1"
    assert main(_args(root, g_path, data, fk, run, "--kimg", "0.002", "--batch", "2", "--batch-gpu", "2",
                      "--fk-ratio", "1")) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "holds no discriminator" in err
    G = load_generator(run / "network.safetensors")
    before, after = read_network(g_path).state_dict, G.state_dict()
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(moved) > 0.5 * sum(t.is_floating_point() for t in before.values())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["data/extra_fraction"] == 1.0 and log[-1]["blur_sigma"] == 0
    meta = json.loads((run / "fage.json").read_text())
    assert meta["d_init"] == "fresh" and meta["fk_ratio"] == 1
    nets = read_network_set(run)
    assert nets.D is not None and nets.G_config.img_resolution == 128

    # export-snapshot --which D / G_ema: the pair continues the run elsewhere (as the bundled G + D do)
    d_file, g_file = root / "run1_D.safetensors", root / "run1_G.safetensors"
    assert main(["export-snapshot", str(run), str(d_file), "--which", "D", "--fp32"]) == 0
    assert main(["export-snapshot", str(run), str(g_file)]) == 0
    pair = read_network_set(g_file, d_file)
    assert pair.D_config == nets.D_config and set(pair.D) == set(nets.D)
    assert all(torch.equal(pair.D[k], nets.D[k]) for k in nets.D)
    assert read_network(g_file).storage_dtype == "float16"
    assert all(torch.equal(pair.G_ema[k], nets.G_ema[k].half().float()) for k in nets.G_ema
               if nets.G_ema[k].is_floating_point())


@pytest.mark.slow
def test_finetune_with_discriminator_resumes(tiny_setup, tmp_path):
    """Trained D given as a file; two chunks (--kimg-per-run, then --resume) end with the network."""
    from psohead.api import load_generator
    from psohead.cli import main
    from psohead.checkpoint.safetensors_io import save_network
    from psohead.training.loop import build_discriminator
    from psohead.training.presets import preset
    from psohead.training.snapshot import load_snapshot
    root, g_path, data, fk = tiny_setup
    D_cfg = preset("tiny")[1]
    D = build_discriminator(D_cfg)
    D.config = D_cfg
    d_path = save_network(D, tmp_path / "D.safetensors")
    run = tmp_path / "run"
    args = _args(root, g_path, data, fk, run, "--kimg", "0.008", "--discriminator", str(d_path))
    assert main(args + ["--kimg-per-run", "0.004"]) == 0
    assert not (run / "network.safetensors").exists()
    assert json.loads((run / "fage.json").read_text())["d_init"] == "trained"
    assert main(["finetune", "--resume", str(run), "--no-progress"]) == 0
    assert load_snapshot(run / "snapshot-latest.pt")["progress"]["cur_nimg"] == 8
    load_generator(run / "network.safetensors")


@pytest.mark.parametrize("case", ["ratio", "no_kimg", "no_network", "run_exists", "resume_not_fage", "no_fk"])
def test_finetune_errors(tiny_setup, tmp_path, capsys, case):
    from psohead.cli import main
    root, g_path, data, fk = tiny_setup
    args = _args(root, g_path, data, fk, tmp_path / "run", "--kimg", "0.004")
    expect = {"ratio": "--fk-ratio 1.5", "no_kimg": "--kimg is required", "no_network": "no such file",
              "run_exists": "already holds a run", "resume_not_fage": "not a psohead finetune run",
              "no_fk": "no such file or folder"}[case]
    if case == "ratio":
        args += ["--fk-ratio", "1.5"]
    elif case == "no_kimg":
        args.remove("--kimg")
        args.remove("0.004")
    elif case == "no_network":
        args[2] = str(tmp_path / "nope.safetensors")
    elif case in ("run_exists", "resume_not_fage"):
        from psohead.training.snapshot import save_snapshot
        save_snapshot(tmp_path / "run" / "snapshot-latest.pt", {"options": {}, "progress": {}})
        if case == "resume_not_fage":
            args = ["finetune", "--resume", str(tmp_path / "run")]
    elif case == "no_fk":
        args[args.index("--fk") + 1] = str(tmp_path / "nofk")
    assert main(args) == 1
    text = capsys.readouterr().err
    assert expect in text and text.count("\n") == 1, text
