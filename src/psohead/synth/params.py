"""Random head and scene parameters: a seed gives one identity, fully deterministic.

Parameters are plain floats (so they can be written to ``heads.jsonl``) and are stacked into
a [B, P] tensor whose columns the SDF reads by name, so any mix of identities renders in one batch.
"""
from __future__ import annotations

import numpy as np
import torch

STYLES = ("bald", "buzz", "short", "bob", "long", "bun", "ponytail", "curly")
STYLE_WEIGHTS = (0.04, 0.10, 0.22, 0.15, 0.20, 0.08, 0.08, 0.13)

HEAD_KEYS = (
    "scale", "cran_rx", "cran_ry", "cran_rz", "cran_z", "face_sx", "face_sy", "face_sz", "nose", "lips_full",
    "jaw_w", "chin", "ear", "neck_r", "brow_ridge", "cheek", "gaze_x", "gaze_y", "eye_size",
    "skin_r", "skin_g", "skin_b", "lip_r", "lip_g", "lip_b", "iris_r", "iris_g", "iris_b",
    "hair_r", "hair_g", "hair_b", "cloth_r", "cloth_g", "cloth_b", "brow_dark", "beard", "blush",
    "cap_on", "cap_thick", "hairline", "curtain_on", "curtain_vol", "curtain_bot", "fringe_y",
    "bun_on", "bun_r", "tail_on", "tail_len", "curl_amp", "curl_freq", "strand_freq", "phase",
    "cloth_style",
)
SCENE_KEYS = (
    "key_az", "key_el", "key_i", "fill_i", "amb_i", "warm", "bg_type", "bg_r0", "bg_g0", "bg_b0",
    "bg_r1", "bg_g1", "bg_b1", "bg_angle", "bg_noise", "bg_phase",
)
COL = {k: i for i, k in enumerate(HEAD_KEYS)}
SCOL = {k: i for i, k in enumerate(SCENE_KEYS)}

# Skin tones are blended in sRGB (perceptually even steps from very light to very dark), then
# stored as linear albedo like every other colour here.
_SKIN_LIGHT_SRGB = np.array([0.96, 0.86, 0.78])
_SKIN_DARK_SRGB = np.array([0.36, 0.23, 0.16])
_HAIR = {  # linear-ish albedo of common hair colours
    "black": (0.035, 0.03, 0.028), "dark_brown": (0.09, 0.055, 0.035), "brown": (0.2, 0.12, 0.065),
    "auburn": (0.32, 0.12, 0.05), "blonde": (0.62, 0.47, 0.27), "light_blonde": (0.8, 0.68, 0.48),
    "gray": (0.45, 0.44, 0.42), "white": (0.78, 0.77, 0.74), "dyed": None,
}
_HAIR_W = (0.24, 0.22, 0.16, 0.07, 0.1, 0.05, 0.07, 0.03, 0.06)
_IRIS = ((0.22, 0.11, 0.04), (0.3, 0.2, 0.08), (0.25, 0.42, 0.62), (0.28, 0.42, 0.25), (0.4, 0.44, 0.47))
_IRIS_W = (0.45, 0.2, 0.15, 0.1, 0.1)

# Adult anthropometry by sex, (mean, sd) in cm (docs/synth.md gives the sources and the measured
# heads): head breadth (eu-eu), head length (glabella-opisthocranion), neck breadth, ear length.
# Breadth and length are drawn correlated; their ratio, the cephalic index, is kept in its range.
HEAD_BREADTH_CM = {"male": (15.4, 0.55), "female": (14.7, 0.5)}
HEAD_LENGTH_CM = {"male": (19.6, 0.7), "female": (18.7, 0.65)}
BREADTH_LENGTH_CORRELATION = 0.35
CEPHALIC_INDEX_RANGE = (0.72, 0.88)
NECK_BREADTH_CM = {"male": (11.7, 0.6), "female": (10.2, 0.5)}
EAR_LENGTH_CM = {"male": (6.3, 0.4), "female": (5.9, 0.4)}
CM_WORLD = 0.0205  # head-local units per face-mesh centimetre (``head.CM``)
FACE_ORIGIN_Z = 0.115  # depth of the face mesh's origin in the head (``head.FACE_ORIGIN``)
GLABELLA_Z_CM = 5.3  # face-mesh depth of the glabella, the front end of the head length
BROW_GAP = 0.005  # the glabella's soft tissue in front of the cranium ellipsoid (head-local units)
EAR_RY = 0.0625  # ear half-length (head-local units) at ``ear`` = 1: a 6.1 cm ear


def _normal(rng, mean_sd, z: float | None = None) -> float:
    """mean + sd * z (z a standard normal draw unless given) with z clipped to +-2 (no outliers)."""
    mean, sd = mean_sd
    return mean + sd * float(np.clip(rng.normal() if z is None else z, -2.0, 2.0))


def _cranium(rng, sex: str, face_sz: float) -> dict:
    """Cranium ellipsoid from a drawn head breadth and length (cm, correlated): length runs from
    the glabella (on the face) to the back of the ellipsoid."""
    z1, z2 = rng.normal(size=2)
    r = BREADTH_LENGTH_CORRELATION
    length = _normal(rng, HEAD_LENGTH_CM[sex], z1)
    breadth = _normal(rng, HEAD_BREADTH_CM[sex], r * z1 + np.sqrt(1 - r * r) * z2)
    breadth = float(np.clip(breadth / length, *CEPHALIC_INDEX_RANGE)) * length
    return cranium_from_cm(breadth, length, face_sz)


def cranium_from_cm(breadth: float, length: float, face_sz: float) -> dict:
    """Cranium ellipsoid columns (``cran_rx``, ``cran_rz``, ``cran_z``) of a head breadth and a
    length from the glabella (cm) at face depth scale ``face_sz``."""
    breadth, length = breadth * CM_WORLD, length * CM_WORLD
    rz = (length - BROW_GAP) / 2
    glabella = FACE_ORIGIN_Z + GLABELLA_Z_CM * CM_WORLD * face_sz
    return {"cran_rx": breadth / 2, "cran_rz": rz, "cran_z": glabella - BROW_GAP - rz}


def sample_head(seed: int) -> dict:
    """One identity: {"seed", "style", "hair_color", **floats}."""
    rng = np.random.default_rng([int(seed), 0x5EAD])
    u = rng.uniform
    style = STYLES[rng.choice(len(STYLES), p=STYLE_WEIGHTS)]
    female_ish = style in ("bob", "long", "bun", "ponytail") and u() < 0.8
    sex = "female" if female_ish else "male"
    # face_sy: the canonical mesh's face height (nasion-menton) is 12.7 cm; adults' are ~12.2 (men), ~11.3 (women)
    p = {
        "scale": u(0.94, 1.05), "cran_ry": u(0.19, 0.21),
        "face_sx": u(0.9, 1.08), "face_sy": u(0.89, 1.03) - 0.05 * female_ish, "face_sz": u(0.85, 1.15), "nose": u(0.6, 1.7),
        "lips_full": u(0.0, 1.0) + 0.3 * female_ish, "jaw_w": u(0.85, 1.12) - 0.06 * female_ish, "chin": u(0.85, 1.15),
        "ear": _normal(rng, EAR_LENGTH_CM[sex]) / (2 * EAR_RY / CM_WORLD),
        "neck_r": _normal(rng, NECK_BREADTH_CM[sex]) * CM_WORLD / 2, "brow_ridge": u(0.0, 1.0), "cheek": u(0, 1),
        "gaze_x": rng.normal(0, 0.08), "gaze_y": rng.normal(0, 0.05), "eye_size": u(0.9, 1.1),
    }
    p.update(_cranium(rng, sex, p["face_sz"]))
    t = rng.beta(1.3, 1.3)
    skin = ((1 - t) * _SKIN_LIGHT_SRGB + t * _SKIN_DARK_SRGB) ** 2.2
    skin = skin * np.array([1, u(0.96, 1.04), u(0.9, 1.08)])
    lip = skin * np.array([u(0.85, 1.0), u(0.5, 0.65), u(0.55, 0.7)])
    if female_ish and u() < 0.4:
        lip = np.array([u(0.45, 0.7), u(0.05, 0.15), u(0.08, 0.2)])  # lipstick
    names = list(_HAIR)
    hair_name = names[rng.choice(len(names), p=np.array(_HAIR_W) / sum(_HAIR_W))]
    if t > 0.6 and hair_name in ("blonde", "light_blonde"):
        hair_name = "black"
    hair = np.array(_HAIR[hair_name] or rng.uniform(0.05, 0.6, 3))
    iris = np.array(_IRIS[rng.choice(len(_IRIS), p=_IRIS_W)]) * u(0.8, 1.2)
    cloth = rng.uniform(0.03, 0.8, 3) * (u(0.4, 1.0) if u() < 0.5 else 1.0)
    p.update(dict(zip(("skin_r", "skin_g", "skin_b"), skin)), **dict(zip(("lip_r", "lip_g", "lip_b"), lip)))
    p.update(dict(zip(("iris_r", "iris_g", "iris_b"), iris)), **dict(zip(("hair_r", "hair_g", "hair_b"), hair)))
    p.update(dict(zip(("cloth_r", "cloth_g", "cloth_b"), cloth)))
    p.update(brow_dark=u(0.4, 0.9), beard=(u(0.3, 1.0) if (not female_ish and u() < 0.3) else 0.0),
             blush=u(0, 0.6) * (0.5 + female_ish), cloth_style=float(rng.integers(0, 3)), phase=u(0, 100))
    p.update(_hair_shape(style, rng))
    return {"seed": int(seed), "style": style, "hair_color": hair_name, **{k: float(p[k]) for k in HEAD_KEYS}}


def _hair_shape(style: str, rng) -> dict:
    u = rng.uniform
    h = dict(cap_on=1.0, cap_thick=u(0.025, 0.045), hairline=u(-0.02, 0.02), curtain_on=0.0, curtain_vol=0.03,
             curtain_bot=-0.1, fringe_y=0.4, bun_on=0.0, bun_r=0.07, tail_on=0.0, tail_len=0.3,
             curl_amp=0.0, curl_freq=60.0, strand_freq=u(150, 260))
    if style == "bald":
        h.update(cap_on=0.0, cap_thick=0.0)
    elif style == "buzz":
        h.update(cap_thick=u(0.002, 0.006), strand_freq=0.0)
    elif style == "bob":
        h.update(curtain_on=1.0, curtain_vol=u(0.025, 0.045), curtain_bot=u(-0.16, -0.07),
                 fringe_y=u(0.1, 0.13) if u() < 0.5 else 0.4)
    elif style == "long":
        h.update(curtain_on=1.0, curtain_vol=u(0.02, 0.04), curtain_bot=u(-0.45, -0.25),
                 fringe_y=u(0.1, 0.13) if u() < 0.3 else 0.4)
    elif style == "bun":
        h.update(cap_thick=u(0.015, 0.022), bun_on=1.0, bun_r=u(0.055, 0.08))
    elif style == "ponytail":
        h.update(cap_thick=u(0.015, 0.022), tail_on=1.0, tail_len=u(0.2, 0.38))
    elif style == "curly":
        h.update(cap_thick=u(0.05, 0.085), curtain_on=float(u() < 0.5), curtain_vol=u(0.05, 0.08),
                 curtain_bot=u(-0.12, -0.02), curl_amp=u(0.006, 0.011), curl_freq=u(35, 55), strand_freq=0.0)
    return h


def sample_scene(seed: int, index: int) -> dict:
    """Lighting and background of one image (independent of the identity)."""
    rng = np.random.default_rng([int(seed), int(index), 0x5CE7])
    u = rng.uniform
    bg_type = float(rng.choice(3, p=(0.3, 0.45, 0.25)))  # flat, gradient, noise
    c0 = rng.uniform(0.05, 0.95, 3) * (u(0.3, 1.0) if u() < 0.5 else 1.0)
    c1 = np.clip(c0 * u(0.4, 1.6) + rng.normal(0, 0.1, 3), 0, 1)
    return {"key_az": u(-1.3, 1.3), "key_el": u(0.05, 0.9), "key_i": u(0.7, 1.2), "fill_i": u(0.1, 0.4),
            "amb_i": u(0.25, 0.45), "warm": u(-0.08, 0.08), "bg_type": bg_type, "bg_r0": c0[0], "bg_g0": c0[1],
            "bg_b0": c0[2], "bg_r1": c1[0], "bg_g1": c1[1], "bg_b1": c1[2], "bg_angle": u(0, 2 * np.pi),
            "bg_noise": u(0.03, 0.12), "bg_phase": u(0, 100)}


def fixed_scene() -> dict:
    """Neutral frontal key light and grey background, for orbits and previews."""
    return {"key_az": 0.5, "key_el": 0.45, "key_i": 1.0, "fill_i": 0.3, "amb_i": 0.35, "warm": 0.0,
            "bg_type": 0.0, "bg_r0": 0.55, "bg_g0": 0.57, "bg_b0": 0.6, "bg_r1": 0.55, "bg_g1": 0.57, "bg_b1": 0.6,
            "bg_angle": 0.0, "bg_noise": 0.0, "bg_phase": 0.0}


def stack(records: list[dict], keys=HEAD_KEYS, device="cpu") -> torch.Tensor:
    return torch.tensor([[float(r[k]) for k in keys] for r in records], dtype=torch.float32, device=device)
