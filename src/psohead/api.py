"""Public entry points: load generators / discriminators from our files or official snapshots."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint.official_pickle import read_official_pickle
from .checkpoint.safetensors_io import NetworkFile, is_safetensors, read_network, save_network, weights_digest
from .errors import CheckpointError
from .networks.config import ConfigError, DiscriminatorConfig, EncoderConfig, GeneratorConfig

__all__ = ["DEFAULT_DISCRIMINATOR", "DEFAULT_ENCODER", "DEFAULT_GENERATOR", "build_network", "check_encoder",
           "generator_digest", "load_discriminator", "load_encoder", "load_generator", "load_network",
           "read_checkpoint", "read_official_networks", "save_encoder", "save_network"]

DEFAULT_GENERATOR = Path(__file__).resolve().parent / "assets" / "default_generator.safetensors"
# The discriminator trained with it: quality scores for FK-Enhance, D features for inversion.
DEFAULT_DISCRIMINATOR = DEFAULT_GENERATOR.with_name("default_discriminator.safetensors")
# The latent encoder trained for the bundled generator (psohead train-encoder).
DEFAULT_ENCODER = DEFAULT_GENERATOR.with_name("default_encoder.safetensors")
GENERATOR_DIGEST_KEY = "psohead.generator_sha256"  # an encoder file's link to its generator
OFFICIAL_CLASSES = {"TriPlaneGenerator": "generator", "MaskDualDiscriminatorV2": "discriminator"}
OFFICIAL_KEYS = ("G_ema", "G", "D")
_MAX_LISTED = 5


def _resolve(path_or_name, kind: str = "generator") -> Path:
    """A file path; the name ``default`` means the bundled network of that kind."""
    if str(path_or_name) == "default":
        default = {"generator": DEFAULT_GENERATOR, "discriminator": DEFAULT_DISCRIMINATOR,
                   "encoder": DEFAULT_ENCODER}[kind]  # looked up here, so tests can point them elsewhere
        if not default.is_file():
            raise CheckpointError(f"the bundled default {kind} ({default}) is missing from this "
                                  "installation; pass a .safetensors or official .pkl path instead")
        return default
    path = Path(path_or_name).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    return path


def _read_official(path: Path, which: str) -> NetworkFile:
    if which not in OFFICIAL_KEYS:
        raise CheckpointError(f"which must be one of {', '.join(OFFICIAL_KEYS)}, got {which!r}")
    return _official_file(path, which, read_official_pickle(path, keys=(which,)).networks[which])


def read_official_networks(path_or_name, keys=OFFICIAL_KEYS) -> dict[str, NetworkFile]:
    """Those of ``keys`` (G_ema, G, D) that an official ``.pkl`` holds, parsed in one pass."""
    path = _resolve(path_or_name)
    nets = read_official_pickle(path, keys=tuple(keys)).networks
    return {key: _official_file(path, key, net) for key, net in nets.items()}


def _official_file(path: Path, which: str, net) -> NetworkFile:
    kind = OFFICIAL_CLASSES.get(net.class_name)
    if kind is None:
        raise CheckpointError(f"{path}: {which} is an official {net.class_name}, which psohead cannot load "
                              f"(supported: {', '.join(OFFICIAL_CLASSES)})")
    config = {k: v for k, v in net.init_kwargs.items() if k != "class_name"}
    if kind == "generator":
        # the live attributes, not the constructor copy: training adds keys such as density_noise
        if net.rendering_kwargs is not None:
            config["rendering_kwargs"] = net.rendering_kwargs
        if net.neural_rendering_resolution is not None:
            config["neural_rendering_resolution"] = net.neural_rendering_resolution
    return NetworkFile(kind=kind, class_name=net.class_name, config=config, state_dict=net.state_dict,
                       metadata={"psohead.source": f"official {which} ({net.class_name}) from {path.name}"})


def read_checkpoint(path_or_name, which: str = "G_ema") -> NetworkFile:
    """Weights + config of one network from a psohead ``.safetensors`` or an official ``.pkl`` snapshot.

    ``which`` picks the network inside an official snapshot (G_ema, G or D); our files hold one
    network and ignore it.
    """
    path = _resolve(path_or_name)
    # safetensors first: its little-endian header length may itself start with byte 0x80
    if is_safetensors(path):
        return read_network(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode of a pickle
        return _read_official(path, which)
    raise CheckpointError(f"{path}: neither a psohead .safetensors file nor an official .pkl snapshot")


def _config(net: NetworkFile, cls, path: Path):
    try:
        return cls.from_dict(net.config)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: its {net.kind} config is not usable: {err}") from None


def _load_weights(module: torch.nn.Module, state_dict: dict, path: Path) -> None:
    """Strict load with a message that names the first offending tensors."""
    own = module.state_dict()
    missing = [n for n in own if n not in state_dict]
    unexpected = [n for n in state_dict if n not in own]
    wrong = [f"{n} {tuple(state_dict[n].shape)} vs {tuple(t.shape)}" for n, t in own.items()
             if n in state_dict and state_dict[n].shape != t.shape]

    def listed(names):
        more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
        return ", ".join(names[:_MAX_LISTED]) + more

    problems = []
    if missing:
        problems.append(f"missing {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {listed(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch (file vs config) {listed(wrong)}")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the network its config describes: " + "; ".join(problems))
    bad = next((n for n, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:  # it would load and render black; a diverged training or a damaged file
        n = int((~torch.isfinite(state_dict[bad])).sum())
        raise CheckpointError(f"{path}: tensor {bad} holds {n} NaN or infinite value(s): the network is broken "
                              "(a training that diverged, or a damaged file)")
    module.load_state_dict(state_dict, strict=True)


def build_network(net: NetworkFile, where: str | os.PathLike = "", device=None, dtype: torch.dtype = torch.float32):
    """The module a :class:`NetworkFile` describes, weights strict-loaded, eval mode, no grad."""
    where = Path(where)
    try:  # a config can be valid field by field and still describe no network (SR head vs resolution)
        if net.kind == "generator":
            from .networks.generator import TriGridGenerator

            module = TriGridGenerator.from_config(_config(net, GeneratorConfig, where))
        elif net.kind == "discriminator":
            from .networks.discriminator import MaskDualDiscriminatorV2

            cfg = _config(net, DiscriminatorConfig, where)
            module = MaskDualDiscriminatorV2(**cfg.to_dict())
            if getattr(module, "config", None) is None:
                module.config = cfg  # lets save_network write it back without a separate config argument
        elif net.kind == "encoder":
            from .networks.encoder import LatentEncoder

            module = LatentEncoder.from_config(_config(net, EncoderConfig, where))
        else:
            raise CheckpointError(f"{where}: unknown network kind {net.kind!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{where}: its {net.kind} config describes no buildable network: {err}") from None
    _load_weights(module, net.state_dict, where)
    module = module.to(device=torch.device(device or "cpu"), dtype=dtype)
    return module.eval().requires_grad_(False)


def load_network(path_or_name: str | os.PathLike, which: str = "G_ema", device=None,
                 dtype: torch.dtype = torch.float32):
    """Whichever network the file holds (``which`` picks G_ema / G / D inside an official .pkl)."""
    path = _resolve(path_or_name)
    return build_network(read_checkpoint(path, which), path, device=device, dtype=dtype)


def load_generator(path_or_name: str | os.PathLike = "default", device=None, which: str = "G_ema",
                   dtype: torch.dtype = torch.float32):
    """A ready ``TriGridGenerator`` (eval mode, no grad) from ``"default"``, our file or an official .pkl.

    ``which`` selects G_ema (default) or G inside an official snapshot. Parameters come back with
    ``requires_grad=False`` as the official loader leaves them; call ``requires_grad_(True)`` to tune.
    """
    if which == "D":
        raise CheckpointError("which='D' is the discriminator; use load_discriminator")
    path = _resolve(path_or_name)
    net = read_checkpoint(path, which)
    if net.kind != "generator":
        raise CheckpointError(f"{path}: holds a {net.kind}, not a generator")
    return build_network(net, path, device=device, dtype=dtype)


def load_discriminator(path: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32):
    """A ``MaskDualDiscriminatorV2`` (eval mode, no grad) from ``"default"``, our file or the D of an official .pkl."""
    path = _resolve(path, kind="discriminator")
    net = read_checkpoint(path, "D")
    if net.kind != "discriminator":
        raise CheckpointError(f"{path}: holds a {net.kind}, not a discriminator")
    return build_network(net, path, device=device, dtype=dtype)


def generator_digest(G: torch.nn.Module) -> str:
    """The digest an encoder file records of its generator: its float32 weights (see
    :func:`psohead.checkpoint.safetensors_io.weights_digest`)."""
    return weights_digest(G.state_dict())


def save_encoder(E: torch.nn.Module, path: str | os.PathLike, generator_sha256: str, half: bool = True,
                 source: str | None = None) -> Path:
    """Write an encoder as a psohead file tied to its generator (``generator_sha256``, from
    :func:`generator_digest`); float16 storage unless ``half`` is False."""
    return save_network(E, path, dtype=torch.float16 if half else torch.float32, source=source,
                        extra_metadata={GENERATOR_DIGEST_KEY: generator_sha256})


def read_encoder(path_or_name: str | os.PathLike = "default") -> NetworkFile:
    """An encoder file's content (``default``: the bundled one), its kind and generator digest checked."""
    path = _resolve(path_or_name, kind="encoder")
    if not is_safetensors(path):
        raise CheckpointError(f"{path}: not an encoder file (encoders are psohead .safetensors files written by "
                              "`psohead train-encoder`)")
    net = read_network(path)
    if net.kind != "encoder":
        raise CheckpointError(f"{path}: holds a {net.kind}, not an encoder")
    if not net.metadata.get(GENERATOR_DIGEST_KEY):
        raise CheckpointError(f"{path}: encoder file without {GENERATOR_DIGEST_KEY} metadata, so the generator it "
                              "belongs to is unknown; train one with `psohead train-encoder`")
    return net


def check_encoder(encoder_sha256: str, G: torch.nn.Module, where: str | os.PathLike = "encoder") -> None:
    """Refuse an encoder trained for another generator (its recorded digest against G's)."""
    actual = generator_digest(G)
    if actual != encoder_sha256:
        raise CheckpointError(f"{where}: the encoder belongs to another generator (trained for weights "
                              f"{encoder_sha256[:16]}..., the loaded generator is {actual[:16]}...); train one for "
                              "this network with `psohead train-encoder`")


def load_encoder(path_or_name: str | os.PathLike = "default", generator: torch.nn.Module | None = None,
                 device=None) -> torch.nn.Module:
    """A ready ``LatentEncoder`` (eval mode, no grad) from ``"default"`` or an encoder file; with
    ``generator`` it must be the one the encoder was trained for (CheckpointError otherwise)."""
    path = _resolve(path_or_name, kind="encoder")
    net = read_encoder(path)
    if generator is not None:
        check_encoder(net.metadata[GENERATOR_DIGEST_KEY], generator, path)
    return build_network(net, path, device=device)
