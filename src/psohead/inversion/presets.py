"""Named settings for a whole reconstruction, as a tree of typed sections.

A :class:`Preset` has one section per part of the pipeline — :class:`Stage1`, :class:`Stage2`,
:class:`Rays`, :class:`BackPrior`, :class:`Shape`, :class:`Outputs`, :class:`Runtime` — and every field is
checked when a section is made, however it is made. Presets:

* ``official`` — the official PSO-HEAD projector: 500 + 500 steps, random ray samples, the
  official loss weights and ray start (the quirks of its exploration noise and stage-2 step count
  fixed);
* ``fast`` — fewer steps of the same schedule with fixed ray samples (less noise per step, so
  fewer steps are needed, and on CUDA each step replays as a CUDA graph), a richer pseudo back
  (±45° views, the photo's hair colour and its evenness, mirror-averaged, blended towards the
  mean head), the geometric pseudo-label (an adult head fitted to the face bounds the outline at
  the sides and the back, with room for the hair the photo shows) and smaller video and mesh;
* ``quality`` — ``fast`` with four stage-1 latents whose back renders are averaged, and the blend
  towards the mean head made per pixel where they disagree: a better back for a longer stage 1;
* ``preview`` — the encoder's latent refined by twenty stage-1 steps at under half the learning
  rate, most of them with a quarter of the rays (the generator is not tuned; no mesh, a short
  video): about ten seconds on a CPU, well under one on a GPU, for a first look; needs an encoder
  for the network (the bundled model has one);
* ``auto`` — ``fast`` (from the mean latent: on real photos the encoder's guess with half the
  steps fitted the face less well, BENCHMARKS.md "Encoder").

How each compares is measured in BENCHMARKS.md. One door changes a preset:
:func:`resolve_preset` with ``{"section.field": value}`` (the CLI's ``--set section.field=value``;
Python keyword arguments ``section_field=value`` mean the same).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from ..errors import InputError
from ..export.mesh_options import MAX_GRID_RESOLUTION, MeshOptionError, MeshOptions
from ..export.video import MAX_TURNTABLE_FRAMES
from .precision import PRECISIONS
from .targets import BACK_WEIGHT

SHRINK_MODES = ("none", "flat", "spread")
INITS = ("mean", "encoder")


def _check(condition: bool, key: str, message: str, value) -> None:
    if not condition:
        raise InputError(f"preset: {key} {message}, got {value!r}")


@dataclass(frozen=True)
class Stage1:
    """Stage 1: a W+ latent projected into the frozen generator, from the mean latent or the
    encoder's guess (the pull towards the mean latent and the exploration noise apply either way)."""

    steps: int = 500  # Adam steps (0: the starting latent is the pivot)
    init: str = "mean"  # where the latent starts: mean (the mean latent) | encoder (the encoder's guess)
    learning_rate: float = 0.1  # peak learning rate of the official ramp (up over 5 %, cosine down over 25 %)
    w_avg_samples: int = 10000  # z samples behind the mean latent and the exploration-noise scale
    official_w_std: bool = False  # reproduce the official noise scale (sqrt(2) too large) instead of the true spread
    members: int = 1  # latents optimised together, each with its own noise; the first is the pivot, the
    # mean of their back renders is the prior (with a prior or fk back)
    # the first coarse_steps steps render coarse_resolution rays a side instead of the network's
    # own (the super-resolution brings the image to full size): a quarter of the rays at 32² of
    # 64², a step about a third cheaper on the CPU, while the fit is still coarse
    coarse_steps: int = 0
    coarse_resolution: int = 32

    def __post_init__(self):
        _check(self.steps >= 0, "stage1.steps", "must be >= 0", self.steps)
        _check(self.init in INITS, "stage1.init", f"must be one of {', '.join(INITS)}", self.init)
        _check(self.learning_rate > 0, "stage1.learning_rate", "must be > 0", self.learning_rate)
        _check(self.w_avg_samples >= 1, "stage1.w_avg_samples", "must be >= 1", self.w_avg_samples)
        _check(self.members >= 1, "stage1.members", "must be >= 1", self.members)
        _check(self.coarse_steps >= 0, "stage1.coarse_steps", "must be >= 0", self.coarse_steps)
        _check(8 <= self.coarse_resolution <= 512, "stage1.coarse_resolution", "must be in 8..512",
               self.coarse_resolution)


@dataclass(frozen=True)
class Stage2:
    """Stage 2: pivotal tuning of the generator's weights around the stage-1 latent."""

    steps: int = 500  # Adam steps (0: the generator is not tuned)
    learning_rate: float = 3e-4  # constant learning rate

    def __post_init__(self):
        _check(self.steps >= 0, "stage2.steps", "must be >= 0", self.steps)
        _check(self.learning_rate > 0, "stage2.learning_rate", "must be > 0", self.learning_rate)


@dataclass(frozen=True)
class Rays:
    """How the volume is sampled along camera rays while optimising."""

    ray_start: float | None = 2.35  # near bound of the rays (the official projector's); None: the network's own
    deterministic: bool = False  # fixed ray samples at every step (official: random)
    # CPU: rays whose coarse opacity is below this (e.g. 1e-4) get no importance samples and
    # composite from their coarse samples (about half the rays; ~15 % of a step; measured to fit
    # real photos a little less well, so off: BENCHMARKS.md); 0: every ray, as officially
    skip_empty_below: float = 0.0

    def __post_init__(self):
        _check(self.ray_start is None or self.ray_start > 0, "rays.ray_start", "must be > 0 or none",
               self.ray_start)
        _check(0 <= self.skip_empty_below < 0.1, "rays.skip_empty_below", "must be in [0, 0.1)",
               self.skip_empty_below)

    def render_overrides(self) -> dict:
        """The generator's rendering options these settings change (none: the network's own)."""
        ro = {"ray_start": self.ray_start} if self.ray_start is not None else {}
        if self.skip_empty_below > 0:
            ro["skip_empty_below"] = self.skip_empty_below
        return ro


@dataclass(frozen=True)
class BackPrior:
    """The pseudo back label made from the stage-1 latent's own render (back strategy prior / fk)."""

    weight: float = BACK_WEIGHT  # loss weight of all prior views together (the official back label's)
    augment_degrees: float = 0.0  # > 0: two more views at yaw pi +- this, sharing the weight with the back
    augment_alternate: bool = False  # those two take turns, one per stage-2 step (same mean weight, fewer renders)
    colour_match: bool = False  # shift the prior's head to the hair colour the photo shows
    colour_spread: bool = False  # with colour_match, also even out its colour variation to the photo's hair's
    mirror_average: bool = False  # average each view with its mirror image: keep the left-right symmetric part
    shrink: str = "none"  # blend towards the mean latent's back: none | flat (by shrink_amount) |
    # spread (per pixel, most where stage-1 members disagree; needs stage1.members >= 2)
    shrink_amount: float = 0.0  # flat: blend weight in [0, 1); spread: the scale c of c*v / (c*v + d), > 0

    def __post_init__(self):
        _check(self.weight >= 0, "back.weight", "must be >= 0", self.weight)
        _check(0 <= self.augment_degrees < 180, "back.augment_degrees", "must be in [0, 180)", self.augment_degrees)
        _check(self.shrink in SHRINK_MODES, "back.shrink", f"must be one of {', '.join(SHRINK_MODES)}", self.shrink)
        if self.shrink == "flat":
            _check(0 < self.shrink_amount < 1, "back.shrink_amount", "must be in (0, 1) with shrink flat",
                   self.shrink_amount)
        elif self.shrink == "spread":
            _check(self.shrink_amount > 0, "back.shrink_amount", "must be > 0 with shrink spread", self.shrink_amount)


# Outputs field -> the MeshOptions field it sets (psohead.export.mesh_options; docs/export.md)
MESH_FIELDS = {"mesh_resolution": "resolution", "mesh_faces": "faces", "texture": "texture",
               "texture_size": "texture_size", "texture_from_photo": "texture_from_photo",
               "render_batch": "render_batch"}


@dataclass(frozen=True)
class Shape:
    """The geometric pseudo-label (:mod:`.shape`): an adult head fitted to the photo's face
    landmarks bounds the generator's opacity at the sides and the back."""

    weight: float = 0.0  # loss weight of the opacity bounds, all shape views together (0: off)
    margin_cm: float = 1.5  # the most opacity allowed: the fitted head's silhouette grown by at least this
    hair_from_photo: bool = True  # grow the margin by the hair (or hat) the photo's mask shows above and beside the head
    inner_cm: float = 0.5  # the least: its silhouette shrunk by this
    stage1: bool = True  # bound stage 1 too (stage 2 always, when the weight is > 0)
    # rays a side of the label's renders (opacity only, no super-resolution); none: the network's
    # neural rendering resolution (fewer rays bound the outline less: BENCHMARKS.md "Wild photos")
    resolution: int | None = None

    def __post_init__(self):
        _check(self.weight >= 0, "shape.weight", "must be >= 0", self.weight)
        _check(0 <= self.margin_cm <= 20, "shape.margin_cm", "must be in [0, 20]", self.margin_cm)
        _check(0 <= self.inner_cm <= 5, "shape.inner_cm", "must be in [0, 5]", self.inner_cm)
        _check(self.resolution is None or 8 <= self.resolution <= 512, "shape.resolution",
               "must be in 8..512 or none", self.resolution)


@dataclass(frozen=True)
class Outputs:
    """What is written besides the networks: views, turntable, meshes, density."""

    video_frames: int = 240  # turntable frames per turn
    video_fps: int = 60  # turntable frames per second
    mesh_resolution: int = 256  # density grid points per axis for the mesh
    mesh_faces: int = MeshOptions.faces  # target face count of the decimated mesh (0: every marching-cubes face)
    texture: bool = True  # UV atlas + texture baked from the final renders (false: vertex colours only)
    texture_size: int | None = None  # texture side, a power of two in 256..8192; none: 8 x the image size, <= 2048
    texture_from_photo: bool = False  # where the input photo sees the face squarely, its colours (with a texture)
    mesh: bool = True  # write the head meshes (head.glb, head.obj, head.ply)
    density: bool = False  # also write the raw density grid as density.mrc
    render_batch: int | None = None  # views per render call; none: by device (more on CUDA)

    def __post_init__(self):
        _check(1 <= self.video_frames <= MAX_TURNTABLE_FRAMES, "outputs.video_frames",
               f"must be in 1..{MAX_TURNTABLE_FRAMES}", self.video_frames)
        _check(self.video_fps >= 1, "outputs.video_fps", "must be >= 1", self.video_fps)
        _check(8 <= self.mesh_resolution <= MAX_GRID_RESOLUTION, "outputs.mesh_resolution",
               f"must be in 8..{MAX_GRID_RESOLUTION}", self.mesh_resolution)
        _check(self.render_batch is None or self.render_batch >= 1, "outputs.render_batch", "must be >= 1 or none",
               self.render_batch)
        self.mesh_options()  # the mesh fields, checked as MeshOptions checks them

    def mesh_options(self) -> MeshOptions:
        """The options of the head meshes (``head.glb``, ``head.obj``, ``head.ply``) these outputs ask for."""
        values = {option: getattr(self, name) for name, option in MESH_FIELDS.items()}
        values["texture_from_photo"] = self.texture_from_photo and self.texture  # (no texture, nothing to take it to)
        try:
            return MeshOptions(**values)
        except MeshOptionError as err:
            name = next(n for n, option in MESH_FIELDS.items() if option == err.field)
            raise InputError(f"preset: outputs.{name} {err.problem}") from None


def mesh_overrides(options: Mapping[str, Any]) -> dict[str, Any]:
    """MeshOptions fields (as the shared ``--mesh-faces`` ... flags give them) as preset changes
    ``{"outputs.mesh_faces": ...}`` for :meth:`Preset.override`."""
    names = {option: name for name, option in MESH_FIELDS.items()}
    return {f"outputs.{names[option]}": value for option, value in options.items()}


@dataclass(frozen=True)
class Runtime:
    """How the optimisation runs: results agree up to float rounding whatever is chosen here."""

    cuda_graphs: bool = True  # on CUDA, replay each step as a CUDA graph (needs rays.deterministic)
    precision: str = "fp32"  # fp32 | tf32 | bf16 (the last two on CUDA only)
    # least seconds between two live previews a progress callable receives from a stage (the
    # first step of each stage always sends one; 0: every step); bars and silent runs take none
    preview_seconds: float = 2.0

    def __post_init__(self):
        _check(self.precision in PRECISIONS, "runtime.precision", f"must be one of {', '.join(PRECISIONS)}",
               self.precision)
        _check(self.preview_seconds >= 0, "runtime.preview_seconds", "must be >= 0", self.preview_seconds)


SECTIONS = {"stage1": Stage1, "stage2": Stage2, "rays": Rays, "back": BackPrior, "shape": Shape,
            "outputs": Outputs, "runtime": Runtime}


@dataclass(frozen=True)
class Preset:
    """A whole reconstruction's settings (module docstring). Sections are frozen: change them with
    :func:`resolve_preset` or :meth:`override`, which check the result again."""

    name: str = "custom"
    stage1: Stage1 = field(default_factory=Stage1)
    stage2: Stage2 = field(default_factory=Stage2)
    rays: Rays = field(default_factory=Rays)
    back: BackPrior = field(default_factory=BackPrior)
    shape: Shape = field(default_factory=Shape)
    outputs: Outputs = field(default_factory=Outputs)
    runtime: Runtime = field(default_factory=Runtime)

    def __post_init__(self):
        for key, cls in SECTIONS.items():
            if not isinstance(getattr(self, key), cls):
                raise InputError(f"preset: {key} must be a {cls.__name__}, got {type(getattr(self, key)).__name__}")
        if self.back.shrink == "spread" and self.stage1.members < 2:
            raise InputError("preset: back.shrink spread measures the spread of stage-1 members: "
                             "set stage1.members >= 2")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Preset":
        """The preset that :meth:`to_dict` wrote (as in reconstruction.json)."""
        unknown = set(data) - {"name", *SECTIONS}
        if unknown:
            raise InputError(f"preset: unknown section(s) {', '.join(sorted(unknown))}")
        return cls(name=data.get("name", "custom"),
                   **{key: _section(key, data.get(key) or {}) for key in SECTIONS})

    def override(self, overrides: Mapping[str, Any] | None = None, **keywords) -> "Preset":
        """A copy with fields changed: ``{"stage1.steps": 60}`` and/or ``stage1_steps=60``. Values
        may be text (as typed on a command line); None leaves a field as it is."""
        changes: dict[str, dict[str, Any]] = {}
        for key, value in {**(overrides or {}), **keywords}.items():
            if value is None:
                continue
            section, name = split_key(key)
            changes.setdefault(section, {})[name] = coerce(value, field_types(section)[name], f"{section}.{name}")
        if not changes:
            return self
        sections = {key: replace(getattr(self, key), **values) for key, values in changes.items()}
        return replace(self, **sections)


def _section(key: str, values: Mapping):
    types = field_types(key)
    unknown = set(values) - set(types)
    if unknown:
        raise InputError(f"preset: unknown field(s) {', '.join(f'{key}.{u}' for u in sorted(unknown))}")
    return SECTIONS[key](**{k: coerce(v, types[k], f"{key}.{k}") for k, v in values.items()})


def field_types(section: str) -> dict[str, Any]:
    """Field name -> type of one section."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def override_keys() -> list[str]:
    """Every ``section.field`` that can be overridden."""
    return [f"{s}.{name}" for s in SECTIONS for name in field_types(s)]


def split_key(key: str) -> tuple[str, str]:
    """``stage1.steps`` or ``stage1_steps`` -> ("stage1", "steps"); unknown keys raise InputError."""
    for section in SECTIONS:
        for sep in (".", "_"):
            if key.startswith(section + sep) and key[len(section) + 1:] in field_types(section):
                return section, key[len(section) + 1:]
    raise InputError(f"unknown setting {key!r}; settings are {', '.join(override_keys())}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def coerce(value, kind, key: str):
    """``value`` (a Python value or text) as a field of type ``kind``; InputError if it is not one."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    if type(None) in options and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    base = next(t for t in options if t is not type(None))
    text = value.strip() if isinstance(value, str) else None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
        elif base is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text is not None:
                return int(text)
        elif base is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
            elif text is not None:
                number = float(text)
            else:
                number = None
            if number is not None and number == number and abs(number) != float("inf"):
                return number
        elif base is str and isinstance(value, str):
            return value
    except ValueError:
        pass
    expected = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}[base]
    raise InputError(f"setting {key}: expected {expected}{' or none' if type(None) in options else ''}, "
                     f"got {value!r}")


# preview: a few stage-1 steps from the encoder's guess at under half the usual learning rate
# (the usual one overshoots from a start this close), most of them at 32² rays (BENCHMARKS.md "Encoder")
PREVIEW_STEPS, PREVIEW_COARSE_STEPS, PREVIEW_LR = 20, 16, 0.04
PRESETS = {
    "official": Preset("official"),
    "fast": Preset("fast", stage1=Stage1(steps=120, w_avg_samples=2000), stage2=Stage2(steps=80),
                   rays=Rays(deterministic=True),
                   back=BackPrior(augment_degrees=45.0, augment_alternate=True, colour_match=True, colour_spread=True,
                                  mirror_average=True, shrink="flat", shrink_amount=0.1),
                   shape=Shape(weight=1.0),
                   outputs=Outputs(video_frames=72, video_fps=24, mesh_resolution=128, texture_from_photo=True)),
}
PRESETS["quality"] = replace(PRESETS["fast"], name="quality", stage1=replace(PRESETS["fast"].stage1, members=4),
                             back=replace(PRESETS["fast"].back, shrink="spread", shrink_amount=4.0))
PRESETS["preview"] = Preset("preview", stage1=Stage1(steps=PREVIEW_STEPS, init="encoder", learning_rate=PREVIEW_LR,
                                                   w_avg_samples=2000, coarse_steps=PREVIEW_COARSE_STEPS),
                             stage2=Stage2(steps=0), rays=Rays(deterministic=True),
                             outputs=Outputs(video_frames=8, video_fps=4, mesh=False))
PRESET_NAMES = ("auto", *PRESETS)


def resolve_preset(preset: str | Preset = "auto", overrides: Mapping[str, Any] | None = None, **keywords) -> Preset:
    """A preset by name (``auto`` = ``fast``) or a :class:`Preset`, with overrides (see
    :meth:`Preset.override`)."""
    if not isinstance(preset, Preset):
        if preset not in PRESET_NAMES:
            raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
        preset = PRESETS["fast" if preset == "auto" else preset]
    return preset.override(overrides, **keywords)


def parse_assignments(items) -> dict[str, str]:
    """``["stage1.steps=60", ...]`` (the CLI's ``--set``) -> {"stage1.steps": "60"}; keys checked."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected section.field=value, e.g. stage1.steps=60")
        split_key(key.strip())
        out[key.strip()] = value
    return out
