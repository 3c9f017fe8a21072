"""Head SDF and materials for a batch of identities (one parameter row per point).

World units follow PanoHead: +y up, the face looks toward +z, the head fits in [-0.5, 0.5]^3 and
sits in front of the default look-at (0, 0, 0.2). Every function takes points ``p`` [M, 3] and
per-point parameter rows ``pp`` [M, P] (columns named in :mod:`params`), so heads of any mix of
styles are evaluated together; absent parts are switched off by adding a large distance.
"""
from __future__ import annotations

import math

import torch

from .face import EXTENT, face_geometry, sample_face
from .params import COL
from .sdf import capsule, ellipsoid, smin, sphere

HEAD_OFFSET = (0.0, -0.035, 0.0)  # places the eyes near the image centre, as in PanoHead crops
CM = 0.0205  # world units per face-mesh centimetre
FACE_ORIGIN = (0.0, -0.005, 0.115)
CRANIUM_CENTER = (0.0, 0.075, -0.025)
OFF = 10.0  # distance added to a switched-off part


def _c(pp: torch.Tensor, name: str) -> torch.Tensor:
    return pp[:, COL[name]]


def _vec(p: torch.Tensor, xyz) -> torch.Tensor:
    return torch.tensor(xyz, dtype=p.dtype, device=p.device)


def wave(p: torch.Tensor, freq, phase) -> torch.Tensor:
    """Cheap smooth pseudo-noise in [-1, 1] (sum of three oblique sines)."""
    f = freq.unsqueeze(-1) if torch.is_tensor(freq) else freq
    a = torch.sin((p * _vec(p, (0.83, 0.41, 0.38)) * f).sum(-1) + phase)
    b = torch.sin((p * _vec(p, (-0.35, 0.77, 0.53)) * f * 1.71).sum(-1) + 1.3 * phase)
    c = torch.sin((p * _vec(p, (0.29, -0.46, 0.84)) * f * 2.93).sum(-1) + 0.7 * phase)
    return (a + 0.6 * b + 0.35 * c) / 1.95


def face_local(p: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """World points -> face-mesh coordinates (cm), with per-identity jaw and chin warps."""
    fs = torch.stack([_c(pp, "face_sx"), _c(pp, "face_sy"), _c(pp, "face_sz")], -1) * CM
    q = (p - _vec(p, FACE_ORIGIN)) / fs
    below = (-q[:, 1] / 9.0).clamp(0, 1)
    qx = q[:, 0] / (1 + (_c(pp, "jaw_w") - 1) * below)
    qy = torch.where(q[:, 1] < -4.0, -4.0 + (q[:, 1] + 4.0) / _c(pp, "chin"), q[:, 1])
    return torch.stack([qx, qy, q[:, 2]], -1)


def _face_cm(q: torch.Tensor, pp: torch.Tensor, tex: torch.Tensor) -> torch.Tensor:
    h = (tex[:, 0] + (_c(pp, "nose") - 1) * tex[:, 1] + 0.3 * _c(pp, "lips_full") * tex[:, 2]
         + 0.25 * _c(pp, "brow_ridge") * tex[:, 3])
    cheek = torch.exp(-((q[:, 0].abs() - 4.2) ** 2 + (q[:, 1] + 0.8) ** 2) / 5.0)
    h = h + 0.35 * _c(pp, "cheek") * cheek
    d = (q[:, 2] - h) / tex[:, 5]
    slab = torch.maximum(d, (h - 7.0) - q[:, 2])
    outside = (q[:, 0].abs() - EXTENT).clamp_min(0) + (q[:, 1].abs() - EXTENT).clamp_min(0)
    return -smin(-slab, 0.2 - tex[:, 8] - outside, 0.6)  # only inside the face oval, softly


def _eyes_cm(q: torch.Tensor, pp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = face_geometry()
    r = 1.2 * _c(pp, "eye_size")
    out = []
    for e in (g.eye_left, g.eye_right):
        c = torch.stack([torch.full_like(r, float(e[0])), torch.full_like(r, float(e[1])), float(e[2]) - 0.3 - r], -1)
        out.append(((q - c).norm(dim=-1) - r, c))
    (dl, cl), (dr, cr) = out
    return torch.minimum(dl, dr), torch.where((dl < dr).unsqueeze(-1), cl, cr)


def components(p: torch.Tensor, pp: torch.Tensor) -> dict[str, torch.Tensor]:
    """Distances of skin, eyes, cloth and hair (world units), plus face-local data for shading."""
    scale = _c(pp, "scale")
    p = (p - _vec(p, HEAD_OFFSET)) / scale.unsqueeze(-1)
    cm = CM * torch.minimum(torch.minimum(_c(pp, "face_sx"), _c(pp, "face_sy")), _c(pp, "face_sz"))
    rx, ry, rz = _c(pp, "cran_rx"), _c(pp, "cran_ry"), _c(pp, "cran_rz")
    cc = _vec(p, CRANIUM_CENTER)
    cran = ellipsoid(p - cc, torch.stack([rx, ry, rz], -1))
    q = face_local(p, pp)
    tex = sample_face(q)
    face = _face_cm(q, pp, tex) * cm
    upper = smin(cran, face, 0.02)
    jw = _c(pp, "jaw_w")
    jaw = ellipsoid(p - _vec(p, (0.0, -0.085, 0.0)), torch.stack([0.118 * jw, 0.095 * _c(pp, "chin"), 0.13 + 0 * jw], -1))
    skin = smin(upper, jaw, 0.03)
    ear_r = torch.stack([0.011 + 0 * rx, 0.031 * _c(pp, "ear"), 0.021 * _c(pp, "ear")], -1)
    pe = torch.stack([p[:, 0].abs() - rx - 0.004, p[:, 1] - 0.005, p[:, 2] + 0.03], -1)
    ear = torch.maximum(ellipsoid(pe, ear_r), -ellipsoid(pe - _vec(p, (0.012, 0.0, 0.002)), ear_r * 0.7))
    skin = smin(skin, ear, 0.006)
    neck_r = _c(pp, "neck_r")
    neck = capsule(p, _vec(p, (0.0, -0.06, -0.035)), _vec(p, (0.0, -0.5, -0.03)), neck_r)
    skin = smin(skin, neck, 0.03)
    eye_cm, eye_c = _eyes_cm(q, pp)
    eyes = eye_cm * cm
    cloth = ellipsoid(p - _vec(p, (0.0, -0.43, -0.035)), _vec(p, (0.36, 0.16, 0.15)))
    cloth = smin(cloth, capsule(p, _vec(p, (0.0, -0.3, -0.035)), _vec(p, (0.0, -0.5, -0.03)), neck_r + 0.012), 0.03)
    hair = _hair(p, pp, upper, cc)
    return {"skin": skin * scale, "eyes": eyes * scale, "cloth": cloth * scale, "hair": hair * scale,
            "q": q, "tex": tex, "eye_c": eye_c, "p": p}


def _hair(p, pp, upper, cc):
    y, z = p[:, 1], p[:, 2]
    plane = (y - 0.675 * z - (0.035 + _c(pp, "hairline"))) / 1.2066
    thick = _c(pp, "cap_thick") * (0.55 + 0.9 * ((y - 0.02) / 0.2).clamp(0, 1))  # fuller on top
    cap = torch.maximum(upper - thick, -plane) + OFF * (1 - _c(pp, "cap_on"))
    vol = _c(pp, "curtain_vol")
    top = cc[1]
    length = (top - _c(pp, "curtain_bot")).clamp_min(0)
    rel = p - cc
    rel = torch.stack([rel[:, 0], rel[:, 1] - torch.maximum(torch.minimum(rel[:, 1], 0 * length), -length), rel[:, 2]], -1)
    radii = torch.stack([_c(pp, "cran_rx") + vol, _c(pp, "cran_ry") + vol, _c(pp, "cran_rz") + vol], -1)
    curtain = torch.maximum(ellipsoid(rel, radii), _c(pp, "curtain_bot") - y)
    zc = 0.035 - 0.1 * ((-0.09 - y) / 0.06).clamp(0, 1)  # behind the neck below the chin
    cut = torch.maximum(zc - z, y - _c(pp, "fringe_y"))
    curtain = torch.maximum(curtain, -cut) + OFF * (1 - _c(pp, "curtain_on"))
    bun = sphere(p, _vec(p, (0.0, 0.22, -0.24)), _c(pp, "bun_r")) + OFF * (1 - _c(pp, "bun_on"))
    tl = _c(pp, "tail_len")
    tail_end = torch.stack([0 * tl, 0.12 - tl, -0.3 - 0.1 * tl], -1)
    tail = capsule(p, _vec(p, (0.0, 0.14, -0.25)), tail_end, 0.036) + OFF * (1 - _c(pp, "tail_on"))
    hair = smin(smin(cap, curtain, 0.02), smin(bun, tail, 0.02), 0.02)
    amp, freq = _c(pp, "curl_amp"), _c(pp, "curl_freq")
    curl = amp * wave(p, freq, _c(pp, "phase"))
    return (hair + curl) / (1 + 1.6 * amp * freq)  # keep a distance bound for the tracer


def sdf(p: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    c = components(p, pp)
    return torch.minimum(torch.minimum(c["skin"], c["eyes"]), torch.minimum(c["cloth"], c["hair"]))


MATERIALS = ("skin", "eyes", "cloth", "hair")


def albedo(c: dict, pp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point albedo [M, 3] and material id [M] (index into MATERIALS) at surface points."""
    d = torch.stack([c[m] for m in MATERIALS], -1)
    mat = d.argmin(-1)
    p, q, tex = c["p"], c["q"], c["tex"]
    rgb = lambda k: torch.stack([_c(pp, f"{k}_r"), _c(pp, f"{k}_g"), _c(pp, f"{k}_b")], -1)  # noqa: E731
    phase = _c(pp, "phase")
    skin_c, hair_c = rgb("skin"), rgb("hair")
    front = ((q[:, 2] + 1.0) / 2.0).clamp(0, 1)  # face markings only on the face, not the back
    tex = tex * front.unsqueeze(-1)
    n = wave(p, 220.0, phase).unsqueeze(-1)
    skin = skin_c * (1 + 0.025 * n)
    skin = torch.lerp(skin, rgb("lip"), tex[:, 2:3].clamp(0, 1))
    skin = skin * (1 - 0.55 * tex[:, 6:7].clamp(0, 1))
    lash = (tex[:, 7:8] * (1 - tex[:, 7:8]) * 4).clamp(0, 1)  # dark rim around the eye opening
    skin = torch.lerp(skin, skin * 0.25, 0.8 * lash)
    brow_c = torch.lerp(hair_c, torch.full_like(hair_c, 0.03), 0.4)
    skin = torch.lerp(skin, brow_c, (tex[:, 3:4] * _c(pp, "brow_dark").unsqueeze(-1)).clamp(0, 1))
    cheek = (front * torch.exp(-((q[:, 0].abs() - 4.0) ** 2 + (q[:, 1] + 1.2) ** 2) / 4.0)).unsqueeze(-1)
    skin = torch.lerp(skin, skin * _vec(p, (1.1, 0.75, 0.75)), (0.5 * _c(pp, "blush").unsqueeze(-1) * cheek))
    beard_zone = (((-1.8 - q[:, 1]) / 1.0).clamp(0, 1) * tex[:, 4] * (1 - tex[:, 2]).clamp(0, 1)).unsqueeze(-1)
    beard = (_c(pp, "beard").unsqueeze(-1) * beard_zone * (0.75 + 0.25 * wave(p, 900.0, phase).unsqueeze(-1))).clamp(0, 1)
    skin = torch.lerp(skin, hair_c * 0.8, beard)
    # eyes: sclera, iris, pupil from the angle to the gaze direction
    v = q - c["eye_c"]
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    gaze = torch.stack([_c(pp, "gaze_x"), _c(pp, "gaze_y"), torch.ones_like(phase)], -1)
    cosg = (v * gaze).sum(-1) / gaze.norm(dim=-1)
    iris = ((cosg - 0.86) / 0.015).clamp(0, 1).unsqueeze(-1)
    pupil = ((cosg - 0.965) / 0.01).clamp(0, 1).unsqueeze(-1)
    eye = torch.lerp(torch.lerp(_vec(p, (0.78, 0.75, 0.7)).expand_as(skin), rgb("iris"), iris), torch.full_like(skin, 0.02), pupil)
    strands = 0.5 + 0.5 * torch.sin(_c(pp, "strand_freq") * (p[:, 0] * 0.95 + p[:, 2] * 0.3) + 3 * wave(p, 25.0, phase))
    hair = hair_c * (0.7 + 0.45 * strands.unsqueeze(-1)) * (1 + 0.15 * wave(p, 90.0, phase).unsqueeze(-1))
    buzz = (1 - _c(pp, "cap_thick") / 0.008).clamp(0, 1).unsqueeze(-1) * 0.55
    hair = torch.lerp(hair, skin_c, buzz)
    cloth = rgb("cloth") * (1 + 0.08 * wave(p, 160.0, phase).unsqueeze(-1))
    out = torch.stack([skin, eye, cloth, hair], 1).gather(1, mat.view(-1, 1, 1).expand(-1, 1, 3)).squeeze(1)
    return out.clamp(0, 1), mat


BOUND_CENTER = (0.0, -0.15, -0.02)
BOUND_RADIUS = 0.62
