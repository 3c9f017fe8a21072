"""The networks a file or run folder holds, for FK-Enhance renders and FAGE fine-tuning.

* psohead ``.safetensors``: one network — the generator (its G_ema); a discriminator, if wanted,
  comes as a second file of the same format (``psohead convert --which D``);
* official ``.pkl`` snapshot: G_ema, G and D;
* training snapshot (``snapshot-latest.pt``, its split parts, or the run folder): G, G_ema, D
  and their configs.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint.safetensors_io import NetworkFile, is_safetensors, read_network
from ..errors import InputError
from ..networks.config import DiscriminatorConfig, GeneratorConfig
from .snapshot import find_latest, load_snapshot, part_paths


@dataclass
class NetworkSet:
    source: str
    G_config: GeneratorConfig
    G_ema: dict[str, torch.Tensor]
    G: dict[str, torch.Tensor] | None = None          # training weights, where the file holds them
    D_config: DiscriminatorConfig | None = None
    D: dict[str, torch.Tensor] | None = None
    D_source: str | None = None

    def generator(self, device="cpu") -> torch.nn.Module:
        """G_ema, strict-loaded, eval mode, no grad."""
        from ..api import build_network
        net = NetworkFile("generator", "TriGridGenerator", self.G_config.to_dict(), self.G_ema)
        return build_network(net, self.source, device=device)

    def discriminator(self, device="cpu") -> torch.nn.Module | None:
        if self.D is None:
            return None
        from ..api import build_network
        net = NetworkFile("discriminator", "MaskDualDiscriminatorV2", self.D_config.to_dict(), self.D)
        return build_network(net, self.D_source or self.source, device=device)


def _is_training_snapshot(path: Path) -> bool:
    # torch.save writes a zip; official pickles and safetensors files are not zips
    return path.is_dir() or bool(part_paths(path)) or (path.is_file() and zipfile.is_zipfile(path))


def _from_snapshot(path: Path) -> NetworkSet:
    snap_path = find_latest(path) if path.is_dir() else path
    if snap_path is None:
        raise InputError(f"network {path}: a folder, but it holds no snapshot-latest.pt")
    snap = load_snapshot(snap_path)
    g_cfg = GeneratorConfig.from_dict(snap["G_config"])
    g_cfg = g_cfg.replace(neural_rendering_resolution=int(snap["neural_rendering_resolution"]))
    return NetworkSet(str(snap_path), g_cfg, snap["G_ema"], snap["G"], DiscriminatorConfig.from_dict(snap["D_config"]),
                      snap["D"], str(snap_path))


def _generator_config(net: NetworkFile, path: Path) -> GeneratorConfig:
    if net.kind != "generator":
        raise InputError(f"network {path}: holds a {net.kind}, not a generator")
    return GeneratorConfig.from_dict(net.config)


def _from_file(path: Path) -> NetworkSet:
    from ..api import read_official_networks
    if is_safetensors(path):
        net = read_network(path)
        return NetworkSet(str(path), _generator_config(net, path), net.state_dict)
    nets = read_official_networks(path)
    g_ema = nets.get("G_ema") or nets.get("G")
    if g_ema is None:
        raise InputError(f"network {path}: the snapshot holds no generator")
    d = nets.get("D")
    g = nets.get("G")
    return NetworkSet(str(path), _generator_config(g_ema, path), g_ema.state_dict, None if g is None else g.state_dict,
                      None if d is None else DiscriminatorConfig.from_dict(d.config), None if d is None else d.state_dict,
                      None if d is None else str(path))


def read_network_set(network: str | os.PathLike, discriminator: str | os.PathLike | None = None) -> NetworkSet:
    """Generator (+ training G and D where present) of ``network``; ``discriminator`` (a file
    holding a D) replaces the file's own D. D must match G's output resolution. ``default`` is the
    bundled generator with its discriminator."""
    if str(network) == "default":
        from ..api import DEFAULT_DISCRIMINATOR, DEFAULT_GENERATOR
        network, discriminator = DEFAULT_GENERATOR, discriminator or DEFAULT_DISCRIMINATOR
    path = Path(network)
    if not path.exists() and not part_paths(path):
        raise InputError(f"network {path}: no such file or folder")
    nets = _from_snapshot(path) if _is_training_snapshot(path) else _from_file(path)
    if discriminator is not None:
        from ..api import read_checkpoint
        d_path = Path(discriminator)
        if not d_path.is_file():
            raise InputError(f"discriminator {d_path}: no such file")
        d = read_checkpoint(d_path, "D")
        if d.kind != "discriminator":
            raise InputError(f"discriminator {d_path}: holds a {d.kind}, not a discriminator")
        nets.D_config, nets.D, nets.D_source = DiscriminatorConfig.from_dict(d.config), d.state_dict, str(d_path)
    if nets.D_config is not None and nets.D_config.img_resolution != nets.G_config.img_resolution:
        raise InputError(f"discriminator {nets.D_source}: judges {nets.D_config.img_resolution} px images but the "
                         f"generator makes {nets.G_config.img_resolution} px")
    return nets
