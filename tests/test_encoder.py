"""The latent encoder: training on a tiny generator, its file format and generator check, resume,
and its use as the first guess of a reconstruction (CLI, tiny network)."""
import json
import math
import struct

import pytest
import torch

from psohead.api import generator_digest, load_encoder, load_generator, save_encoder
from psohead.checkpoint.safetensors_io import save_network, write_network
from psohead.errors import CheckpointError, InputError
from psohead.training.encoder import (EncoderTrainOptions, heldout_samples, latent_error, resume_training,
                                      train_encoder)

from conftest import require_shared

# a small encoder, so a step costs milliseconds on two cores
SMALL = {"img_resolution": 32, "channel_base": 256, "channel_max": 32, "feature_dim": 64}


def _micro_generator(seed: int = 0):
    from inversion_tiny import tiny_generator

    return tiny_generator(seed, triplane_size=16, depth=4, neural=16)


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("net") / "tiny.safetensors"
    save_network(_micro_generator(), path)
    return path


def _opts(net, out, **changes) -> EncoderTrainOptions:
    base = dict(network=str(net), out=str(out), encoder=SMALL, batch=4, lr=3e-3, warmup_steps=0, image_every=4,
                image_batch=2, w_avg_samples=200, heldout=8, log_every=4, grid_every=1000, snapshot_every=1000,
                device="cpu", progress=False)
    return EncoderTrainOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tiny_net, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "E.safetensors"
    result = train_encoder(_opts(tiny_net, out, steps=12))
    return out, result


def test_training_lowers_the_held_out_latent_error(tiny_net, trained):
    out, result = trained
    G = load_generator(tiny_net)
    E = load_encoder(out, generator=G)
    opts = _opts(tiny_net, out)
    samples = heldout_samples(G, opts)
    # before training the encoder returns the mean latent: its error, computed here from the samples
    mean_error = float((E.w_avg - samples.ws).square().mean() / E.w_scale.square())
    after = latent_error(E, samples)
    assert 0.5 < mean_error < 2.0  # the unit is the latents' spread
    assert after < 0.75 * mean_error, (mean_error, after)
    log = [json.loads(line) for line in (out.parent / "E-run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 8, 12]
    assert all("loss/image" in r for r in log)  # the image loss ran (every fourth step)


def test_resumed_chunks_continue_the_same_run(tiny_net, tmp_path):
    whole = train_encoder(_opts(tiny_net, tmp_path / "a" / "E.safetensors", steps=3, batch=3, heldout=2,
                                image_every=2))
    first = train_encoder(_opts(tiny_net, tmp_path / "b" / "E.safetensors", steps=2, batch=3, heldout=2,
                                image_every=2))
    assert first["step"] == 2
    run = tmp_path / "b" / "E-run"
    second = resume_training(run, {"steps": 1})
    assert (whole["step"], second["step"]) == (3, 3)
    a = load_encoder(tmp_path / "a" / "E.safetensors").state_dict()
    b = load_encoder(tmp_path / "b" / "E.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same steps on the same samples
    with pytest.raises(InputError, match="already holds an encoder run"):
        train_encoder(_opts(tiny_net, tmp_path / "b" / "E.safetensors", steps=1))


def test_a_new_run_can_start_from_an_encoder_file(tiny_net, trained, tmp_path):
    out, result = trained
    start = train_encoder(_opts(tiny_net, tmp_path / "c" / "E.safetensors", steps=0, encoder={}, init_from=str(out)))
    fresh = train_encoder(_opts(tiny_net, tmp_path / "d" / "E.safetensors", steps=0))
    # where the file left off (up to its float16 storage), not where a new encoder starts
    assert start["heldout_latent_error"] == pytest.approx(result["heldout_latent_error"], rel=0.01)
    assert start["heldout_latent_error"] < 0.9 * fresh["heldout_latent_error"]
    more = train_encoder(_opts(tiny_net, tmp_path / "e" / "E.safetensors", steps=4, encoder={}, init_from=str(out)))
    assert more["step"] == 4 and math.isfinite(more["heldout_latent_error"])
    with pytest.raises(InputError, match="--init-from"):
        train_encoder(_opts(tiny_net, tmp_path / "f" / "E.safetensors", steps=1, init_from=str(out)))
    with pytest.raises(InputError, match="--init-from"):
        resume_training(tmp_path / "c" / "E-run", {"steps": 1, "init_from": str(out)})


def test_encoder_refuses_another_generator(tiny_net, trained):
    out, _ = trained
    other = _micro_generator(seed=1)
    own = load_generator(tiny_net)
    with pytest.raises(CheckpointError) as err:
        load_encoder(out, generator=other)
    message = str(err.value)
    assert generator_digest(other)[:16] in message and generator_digest(own)[:16] in message
    assert "\n" not in message
    load_encoder(out, generator=own)  # its own generator passes


def test_generator_digest_is_that_of_the_float32_weights(tmp_path):
    """The official-format pickle and our file of the same fixture weights give one digest; fp16
    storage rounds the weights, which the digest sees."""
    fixtures = require_shared("fixtures")
    from_pkl = load_generator(fixtures / "panohead_small_official_format.pkl")
    ours = tmp_path / "small.safetensors"
    save_network(from_pkl, ours)
    assert generator_digest(load_generator(ours)) == generator_digest(from_pkl)
    G = _micro_generator()
    half = tmp_path / "half.safetensors"
    save_network(G, half, dtype=torch.float16)
    assert generator_digest(load_generator(half)) != generator_digest(G)
    assert generator_digest(load_generator(half)) == generator_digest(G.half().float())


def test_bad_encoder_files_give_one_clear_error(tiny_net, trained, tmp_path):
    out, _ = trained
    cases = {}
    cases["text"] = tmp_path / "notes.safetensors"
    cases["text"].write_text("not a network")
    cases["truncated"] = tmp_path / "cut.safetensors"
    cases["truncated"].write_bytes(out.read_bytes()[:-1000])
    cases["header"] = tmp_path / "header.safetensors"
    data = out.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    cases["header"].write_bytes(data[:8 + n // 2])
    E = load_encoder(out)
    cases["no digest"] = tmp_path / "nodigest.safetensors"
    write_network(cases["no digest"], "encoder", "LatentEncoder", E.config.to_dict(), E.state_dict())
    expected = {"text": "not an encoder file", "truncated": "corrupt or truncated", "header": "truncated",
                "no digest": "generator_sha256", "generator": "not an encoder"}
    cases["generator"] = tiny_net
    for name, path in cases.items():
        with pytest.raises(CheckpointError, match=expected[name]) as err:
            load_encoder(path)
        assert "\n" not in str(err.value), name
    with pytest.raises(CheckpointError, match="no such file"):
        load_encoder(tmp_path / "missing.safetensors")
    # and as the generator of a reconstruction, an encoder file is refused too
    with pytest.raises(CheckpointError, match="not a generator"):
        load_generator(out)


def test_cli_trains_and_resumes(tiny_net, tmp_path, capsys):
    from psohead.cli import main

    out = tmp_path / "E.safetensors"
    args = ["train-encoder", "--network", str(tiny_net), "--out", str(out), "--device", "cpu", "--batch", "2",
            "--w-avg-samples", "200", "--heldout", "2", "--grid-every", "2", "--no-progress",
            "--encoder-resolution", "32", "--encoder-channel-base", "256", "--encoder-channel-max", "32",
            "--encoder-feature-dim", "64"]
    assert main(args + ["--steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    run = tmp_path / "E-run"
    assert main(["train-encoder", "--resume", str(run), "--steps", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert {"samples000002.png", "samples000003.png", "log.jsonl", "config.json"} <= {p.name for p in run.iterdir()}
    assert main(["train-encoder", "--network", str(tiny_net), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "--steps, --kimg or --max-minutes" in capsys.readouterr().err
    assert main(["train-encoder", "--resume", str(tmp_path), "--steps", "1"]) == 1
    assert "not a train-encoder run folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def crop(tiny_net, tmp_path_factory):
    """An aligned crop of a head of the tiny network (with its dataset.json label) and its code."""
    from PIL import Image

    from psohead.camera import HEAD_LOOKAT, label_from_yaw_pitch
    from psohead.training.encoder import render_samples

    G = load_generator(tiny_net)
    s = render_samples(G, torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(7)),
                       label_from_yaw_pitch(0.2, 0.05, lookat=HEAD_LOOKAT))
    folder = tmp_path_factory.mktemp("crop")
    Image.fromarray(((s.image[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).save(
        folder / "crop.png")
    (folder / "dataset.json").write_text(json.dumps({"labels": [["crop.png", s.label[0].tolist()]]}))
    return folder / "crop.png", s


def test_cli_preview_is_the_encoders_latent_and_init_encoder_starts_there(tiny_net, trained, crop, tmp_path,
                                                                          capsys):
    from psohead.cli import main
    from psohead.export.latent import load_latent
    from psohead.io.images import read_image, to_tensor

    enc, _ = trained
    path, sample = crop
    small = ["--set", "outputs.video_frames=4", "--set", "runtime.cuda_graphs=false", "--quiet"]
    E = load_encoder(enc)
    guess = E(to_tensor(read_image(path), 128), sample.label)
    G = load_generator(tiny_net)

    def image_error(ws):  # the latent's render against the crop, at the crop's own camera
        with torch.no_grad():
            img = G.synthesis(ws, sample.render_label, noise_mode="const", deterministic=True)["image"]
        return float((img - sample.image).square().mean())

    for steps in ("0", None):  # the guess alone, and the preset's refinement of it
        out = tmp_path / f"preview{steps}"
        extra = ["--stage1-steps", steps] if steps else []
        assert main(["reconstruct", str(path), "--out", str(out), "--network", str(tiny_net), "--encoder", str(enc),
                     "--preset", "preview", *extra, *small]) == 0
        summary = json.loads((out / "reconstruction.json").read_text())
        s1 = summary["settings"]["preset"]["stage1"]
        assert (s1["init"], summary["settings"]["preset"]["stage2"]["steps"]) == ("encoder", 0)
        assert summary["settings"]["encoder"] == str(enc)
        assert not {"head.glb", "head.obj", "head.ply"} & set(summary["files"])
        assert {"views.png", "turntable.mp4", "latent.safetensors", "report.html"} <= set(summary["files"])
        ws = load_latent(out / "latent.safetensors").ws
        if steps == "0":
            assert torch.allclose(ws, guess, atol=1e-5)
            assert (ws - E.w_avg).abs().max() > 100 * (ws - guess).abs().max()  # not the mean latent
        else:
            assert (s1["steps"], s1["coarse_steps"], s1["learning_rate"]) == (20, 16, 0.04)
            assert image_error(ws) < image_error(guess)  # the steps bring the guess closer to the photo

    out = tmp_path / "init"
    assert main(["reconstruct", str(path), "--out", str(out), "--network", str(tiny_net), "--encoder", str(enc),
                 "--preset", "fast", "--init", "encoder", "--stage1-steps", "2", "--stage2-steps", "0",
                 "--set", "outputs.mesh=false", "--back", "none", *small]) == 0
    s1 = json.loads((out / "reconstruction.json").read_text())["settings"]["preset"]["stage1"]
    assert (s1["init"], s1["steps"]) == ("encoder", 2)

    # another generator's encoder, and an encoder where the network has none: one line each, nothing written
    other = tmp_path / "other.safetensors"
    save_network(_micro_generator(seed=1), other)
    for argv, message in ((["--network", str(other), "--encoder", str(enc), "--preset", "preview"],
                           "belongs to another generator"),
                          (["--network", str(tiny_net), "--preset", "preview"], "no encoder for this network"),
                          (["--network", str(tiny_net), "--init", "encoder"], "no encoder for this network")):
        assert main(["reconstruct", str(path), "--out", str(tmp_path / "bad"), *argv, *small]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not (tmp_path / "bad").exists()


def test_the_networks_encoder_is_found_and_auto_stays_fast(tiny_net, trained, monkeypatch, tmp_path):
    import psohead.api
    from psohead.inversion.pipeline import Reconstructor
    from psohead.inversion.presets import PRESETS

    enc, _ = trained
    # auto is fast from the mean latent, with or without an encoder (measured: BENCHMARKS.md "Encoder")
    for R in (Reconstructor(tiny_net, device="cpu"), Reconstructor(tiny_net, device="cpu", encoder=enc)):
        assert R.preset.stage1 == PRESETS["fast"].stage1 and R.preset.stage2 == PRESETS["fast"].stage2
    assert Reconstructor(tiny_net, device="cpu", encoder=enc, stage1_init="encoder").preset.stage1.init == "encoder"
    # the bundled model finds the bundled encoder when its digest matches, and ignores a foreign one
    G = load_generator("default")
    bundled = tmp_path / "default_encoder.safetensors"
    from psohead.training.encoder import build_encoder
    from psohead.inversion.projector import latent_stats

    E = build_encoder(G, EncoderTrainOptions(out="x.safetensors", steps=0), latent_stats(G, 100))
    save_encoder(E, bundled, generator_digest(G))
    monkeypatch.setattr(psohead.api, "DEFAULT_ENCODER", bundled)
    R = Reconstructor("default", device="cpu", preset="preview")
    assert (R.preset.stage1.init, R.encoder_file) == ("encoder", "default")
    monkeypatch.setattr(psohead.api, "DEFAULT_ENCODER", enc)
    R = Reconstructor("default", device="cpu")  # fast needs no encoder: none is read
    assert R.encoder is None
    with pytest.warns(UserWarning, match="bundled encoder is not used"), \
            pytest.raises(InputError, match="no encoder for this network"):
        Reconstructor("default", device="cpu", preset="preview")


def test_real_crops_join_the_image_loss(tiny_net, crop, tmp_path):
    from PIL import Image

    path, _ = crop
    (path.parent / "masks").mkdir(exist_ok=True)
    Image.new("L", Image.open(path).size, 255).save(path.parent / "masks" / "crop.png")
    out = tmp_path / "E.safetensors"
    train_encoder(_opts(tiny_net, out, data=str(path.parent), steps=1, batch=2, heldout=2, image_every=1))
    record = json.loads((tmp_path / "E-run" / "log.jsonl").read_text().splitlines()[-1])
    assert record["loss/real_image"] > 0 and record["loss/image"] > 0


def test_the_bundled_encoder_guesses_its_generators_samples_better_than_the_mean_latent():
    import psohead.api
    from psohead.camera import label_from_yaw_pitch
    from psohead.inversion.projector import latent_stats
    from psohead.metrics.image import psnr

    if not psohead.api.DEFAULT_ENCODER.is_file():
        pytest.fail("the bundled encoder is missing from src/psohead/assets")
    G = load_generator("default")
    E = load_encoder("default", generator=G)
    w_avg = latent_stats(G, 2000).w_avg.repeat(1, G.backbone.num_ws, 1)
    gen = torch.Generator().manual_seed(2024)  # samples the encoder's training never drew in this order
    better = []
    for yaw in (0.0, 0.3, -0.3):
        c = label_from_yaw_pitch(yaw)[0].reshape(1, 25)
        with torch.no_grad():
            ws = G.mapping(torch.randn(1, G.z_dim, generator=gen), c, truncation_psi=1)
            target = G.synthesis(ws, c, noise_mode="const")["image"]
            guess = G.synthesis(E(target, c), c, noise_mode="const")["image"]
            mean = G.synthesis(w_avg, c, noise_mode="const")["image"]
        u8 = [((x[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255)).byte().numpy() for x in (target, guess, mean)]
        better.append(psnr(u8[1], u8[0]) - psnr(u8[2], u8[0]))
    assert min(better) > 1.0, better  # dB over the mean latent's render, on every sample
