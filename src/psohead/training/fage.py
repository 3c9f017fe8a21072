"""FAGE fine-tuning: a trained generator and its discriminator trained on, with FK-Enhance back
views mixed into the real batches (docs/training.md, "FAGE fine-tuning").

A fine-tune is a normal training run (:func:`psohead.training.loop.train`) that starts from the
network's weights, with the schedules of an official resume (no blur or density-noise fade-in,
pose-swap probability at its final value, G_ema without ramp-up) and the network's own neural
rendering resolution. ``RUN/fage.json`` records the sources so ``--resume RUN`` needs nothing
else; when the run is complete, ``RUN/network.safetensors`` holds G_ema in our format.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError
from ..networks.config import DiscriminatorConfig, GeneratorConfig
from ..io.dataset import HeadDataset
from .options import TrainOptions
from .snapshot import LATEST, find_latest

FAGE_FILE = "fage.json"
NETWORK_FILE = "network.safetensors"


def finetune_options(opts: TrainOptions, G_cfg: GeneratorConfig) -> TrainOptions:
    """Resume-style schedules (spec 2.5) at the network's own neural rendering resolution."""
    loss = dataclasses.replace(opts.loss.without_fades(), neural_rendering_resolution_final=None,
                               neural_rendering_resolution_initial=int(G_cfg.neural_rendering_resolution))
    return opts.replace(loss=loss, ema_rampup=None)


def fresh_discriminator_config(preset_name: str, resolution: int) -> DiscriminatorConfig:
    """The preset's D config, at the generator's output resolution."""
    from .presets import preset
    cfg = preset(preset_name)[1]
    if cfg.img_resolution != resolution:
        cfg = cfg.replace(img_resolution=resolution, seg_resolution=min(128, resolution))
    return cfg


def _check_ratio(fk_ratio: float) -> None:
    if not (math.isfinite(fk_ratio) and 0 <= fk_ratio <= 1):
        raise InputError(f"--fk-ratio {fk_ratio}: must lie in [0, 1]")


def _fk_dataset(fk, opts: TrainOptions) -> HeadDataset:
    if fk is None:
        raise InputError("--fk is required (an FK-Enhance dataset: psohead fk-enhance)")
    return HeadDataset(fk, xflip=opts.xflip)


def _finish(result: dict, out: Path) -> dict:
    if result["complete"]:
        from .loop import export_network
        result["network"] = str(export_network(out / LATEST, out / NETWORK_FILE, half=False))
    return result


def finetune(opts: TrainOptions, network=None, fk=None, fk_ratio: float | None = None, preset_name: str = "default",
             discriminator=None, resume: str | None = None) -> dict:
    """Fine-tune (new run: ``network`` + ``fk``) or continue one (``resume``: a snapshot of it).

    ``opts`` are the training options (data, out, kimg, batch, ...); on resume only the
    run-control ones are used, as for ``train``. Returns train's summary (+ ``network`` when done).
    """
    from .loop import train

    if resume is not None:
        run = Path(resume).parent
        meta_path = run / FAGE_FILE
        if not meta_path.is_file():
            raise InputError(f"--resume {resume}: {meta_path} is missing (not a psohead finetune run)")
        meta = json.loads(meta_path.read_text())
        meta["fk"] = str(fk) if fk is not None else meta["fk"]
        meta["fk_ratio"] = fk_ratio if fk_ratio is not None else meta["fk_ratio"]
        _check_ratio(meta["fk_ratio"])
        extra = _fk_dataset(meta["fk"], opts)
        write_json(meta_path, meta)
        return _finish(train(opts, resume=resume, extra_data=extra, extra_ratio=meta["fk_ratio"]), Path(opts.out))

    from .network_source import read_network_set
    fk_ratio = 0.3 if fk_ratio is None else fk_ratio
    _check_ratio(fk_ratio)
    if network is None:
        raise InputError("--network is required (the generator to fine-tune)")
    if not opts.data or not opts.out:
        raise InputError("--data and --out are required")
    out = Path(opts.out)
    if find_latest(out) is not None:
        raise InputError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    nets = read_network_set(network, discriminator)
    extra = _fk_dataset(fk, opts)
    G_cfg = nets.G_config
    if nets.D is None:
        D_cfg = fresh_discriminator_config(preset_name, G_cfg.img_resolution)
        warnings.warn(f"{nets.source} holds no discriminator: D starts from random weights (preset {preset_name!r} "
                      f"D config at {G_cfg.img_resolution} px); expect a worse start than with the trained D "
                      "(give one with --discriminator)", stacklevel=2)
    else:
        D_cfg = nets.D_config
    opts = finetune_options(opts, G_cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / FAGE_FILE, {"network": str(Path(nets.source).resolve()), "discriminator": nets.D_source,
                                 "d_init": "trained" if nets.D is not None else "fresh", "fk": str(fk),
                                 "fk_ratio": fk_ratio, "data": opts.data})
    init = {"G": nets.G if nets.G is not None else nets.G_ema, "G_ema": nets.G_ema, "D": nets.D}
    return _finish(train(opts, G_cfg, D_cfg, init=init, extra_data=extra, extra_ratio=fk_ratio), out)
