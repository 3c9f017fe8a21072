"""The latent encoder: training on a tiny generator, its file format and generator check, resume,
and its use as the first guess of a reconstruction (CLI, tiny network)."""
import json
import struct

import pytest
import torch

from psohead.api import generator_digest, load_encoder, load_generator, save_encoder
from psohead.checkpoint.safetensors_io import save_network, write_network
from psohead.errors import CheckpointError, InputError
from psohead.training.encoder import (EncoderTrainOptions, heldout_samples, latent_error, resume_options,
                                      train_encoder)

from conftest import require_shared

# a small encoder, so a step costs milliseconds on two cores
SMALL = {"img_resolution": 32, "channel_base": 256, "channel_max": 32, "feature_dim": 64}


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    from inversion_tiny import tiny_generator

    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("net") / "tiny.safetensors"
    save_network(tiny_generator(), path)
    return path


def _opts(net, out, **changes) -> EncoderTrainOptions:
    base = dict(network=str(net), out=str(out), encoder=SMALL, batch=8, lr=3e-3, warmup_steps=0, image_every=2,
                image_batch=2, w_avg_samples=200, heldout=16, log_every=5, grid_every=1000, snapshot_every=1000,
                device="cpu", progress=False)
    return EncoderTrainOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tiny_net, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "E.safetensors"
    result = train_encoder(_opts(tiny_net, out, steps=40))
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
    assert after < 0.7 * mean_error, (mean_error, after)
    log = [json.loads(line) for line in (out.parent / "E-run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(5, 41, 5))
    assert all("loss/image" in r for r in log)  # the image loss ran (every other step)


def test_resumed_chunks_continue_the_same_run(tiny_net, tmp_path):
    whole = train_encoder(_opts(tiny_net, tmp_path / "a" / "E.safetensors", steps=6))
    first = train_encoder(_opts(tiny_net, tmp_path / "b" / "E.safetensors", steps=4))
    assert first["step"] == 4
    run = tmp_path / "b" / "E-run"
    second = train_encoder(resume_options(run, {"steps": 2}), resume=str(run))
    assert (whole["step"], second["step"]) == (6, 6)
    a = load_encoder(tmp_path / "a" / "E.safetensors").state_dict()
    b = load_encoder(tmp_path / "b" / "E.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same steps on the same samples
    with pytest.raises(InputError, match="already holds an encoder run"):
        train_encoder(_opts(tiny_net, tmp_path / "b" / "E.safetensors", steps=1))


def test_encoder_refuses_another_generator(tiny_net, trained):
    from inversion_tiny import tiny_generator

    out, _ = trained
    other = tiny_generator(seed=1)
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
    from inversion_tiny import tiny_generator

    fixtures = require_shared("fixtures")
    from_pkl = load_generator(fixtures / "panohead_small_official_format.pkl")
    ours = tmp_path / "small.safetensors"
    save_network(from_pkl, ours)
    assert generator_digest(load_generator(ours)) == generator_digest(from_pkl)
    G = tiny_generator()
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
    args = ["train-encoder", "--network", str(tiny_net), "--out", str(out), "--device", "cpu", "--batch", "4",
            "--w-avg-samples", "200", "--heldout", "4", "--grid-every", "2", "--no-progress",
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
