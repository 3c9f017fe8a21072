"""Verb: ``train-encoder`` (docs/encoder.md)."""
from __future__ import annotations

import json

# CLI flag -> EncoderTrainOptions field, for flags whose value (when given) replaces the default or
# the resumed run's.
_OPTION_FLAGS = ("network", "out", "run_dir", "init_from", "data", "augment", "batch", "lr", "warmup_steps",
                 "latent_weight", "image_weight", "image_every", "image_batch", "perceptual", "perceptual_weight",
                 "vgg16", "yaw_std", "max_yaw", "pitch_std", "w_avg_samples", "heldout", "seed", "steps", "kimg",
                 "max_minutes", "log_every", "grid_every", "snapshot_every", "device", "progress")
_ENCODER_FLAGS = {"encoder_resolution": "img_resolution", "encoder_channel_base": "channel_base",
                  "encoder_channel_max": "channel_max", "encoder_feature_dim": "feature_dim"}


def _changes(args) -> dict:
    changes = {name: getattr(args, name) for name in _OPTION_FLAGS if getattr(args, name) is not None}
    encoder = {field: getattr(args, flag) for flag, field in _ENCODER_FLAGS.items() if getattr(args, flag) is not None}
    if encoder:
        changes["encoder"] = encoder
    return changes


def _train_encoder(args) -> int:
    from ..errors import InputError
    from ..training.encoder import EncoderTrainOptions, resume_training, train_encoder

    changes = _changes(args)
    if args.resume:
        if "encoder" in changes:
            raise InputError("--encoder-* flags describe a new network; they cannot change a resumed run")
        summary = resume_training(args.resume, changes)
    else:
        summary = train_encoder(EncoderTrainOptions(**changes))
    print(json.dumps(summary))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-encoder", help="train a latent encoder for a generator (a first guess for reconstruct)",
        description="Train an encoder (aligned crop + camera label -> W+ latent) on the generator's own "
                    "samples; chunked and resumable. docs/encoder.md")
    p.add_argument("--network", help="generator: 'default' (bundled), a .safetensors or an official .pkl")
    p.add_argument("--out", help="encoder file (.safetensors), written at the end of every run")
    p.add_argument("--run-dir", help="run folder (state, log.jsonl, sample grids); default: <out stem>-run beside --out")
    p.add_argument("--resume", help="continue the run in this run folder")
    p.add_argument("--init-from", help="start a new run from this encoder file (e.g. 'default': the bundled one), "
                                       "trained for the same --network")
    p.add_argument("--data", help="aligned crops + dataset.json (psohead crop's output): real images, image loss only")
    p.add_argument("--augment", type=float,
                   help="share of samples the encoder sees as a photo would show them: new background, exposure, "
                        "white balance, blur, resampling, noise (default 0; 0.8 for encoders meant for real photos)")
    p.add_argument("--steps", type=int, help="steps in this run")
    p.add_argument("--kimg", type=float, help="or thousands of generator samples in this run")
    p.add_argument("--max-minutes", type=float, help="or wall time of this run (ends with a snapshot)")
    p.add_argument("--batch", type=int, help="generator samples per step (default 16)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (default 100 steps)")
    p.add_argument("--latent-weight", type=float, help="weight of the W+ error (default 1)")
    p.add_argument("--image-weight", type=float, help="weight of the image loss of re-rendered codes (default 0.1; 0: off)")
    p.add_argument("--image-every", type=int, help="image loss every N steps (default 4)")
    p.add_argument("--image-batch", type=int, help="samples (and real crops) re-rendered per image step (default 4)")
    p.add_argument("--perceptual", choices=("auto", "lpips", "msssim", "none"),
                   help="perceptual term of the image loss (auto: lpips with --vgg16, else msssim)")
    p.add_argument("--perceptual-weight", type=float, help="image loss = pixel MSE + this * perceptual (default 1)")
    p.add_argument("--vgg16", help="torchvision VGG16 weights for --perceptual lpips")
    p.add_argument("--yaw-std", type=float, help="spread of the sampled cameras' yaw in degrees (default 20)")
    p.add_argument("--max-yaw", type=float, help="largest sampled |yaw| in degrees (default 60)")
    p.add_argument("--pitch-std", type=float, help="spread of the sampled cameras' pitch in degrees (default 8)")
    p.add_argument("--w-avg-samples", type=int, help="z samples behind the mean latent (default 10000)")
    p.add_argument("--heldout", type=int, help="held-out samples for the logged latent error (default 32)")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int, help="log.jsonl record every N steps (default 50)")
    p.add_argument("--grid-every", type=int, help="sample grid every N steps (default 500)")
    p.add_argument("--snapshot-every", type=int, help="state + encoder file every N steps (default 1000)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--encoder-resolution", type=int, help="new encoder: input size (default 128)")
    p.add_argument("--encoder-channel-base", type=int, help="new encoder: channel_base (default 2048)")
    p.add_argument("--encoder-channel-max", type=int, help="new encoder: channel_max (default 256)")
    p.add_argument("--encoder-feature-dim", type=int, help="new encoder: width of its fully connected layers (default 512)")
    p.set_defaults(func=_train_encoder)
