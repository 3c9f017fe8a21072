"""Head SDF and materials for a batch of identities.

World units follow PanoHead: +y up, the face looks toward +z, the head fits in [-0.5, 0.5]^3 and
sits in front of the default look-at (0, 0, 0.2). Points are coordinate columns ``x, y, z`` [M]
(see :mod:`sdf`; the public wrappers also take [M, 3]) and :class:`PointParams` gives each point
its head's parameters (columns named in :mod:`params`), so heads of any mix of styles are
evaluated together. Absent parts are switched off by adding a large distance; a part that no head
of the batch has is not evaluated at all.
"""
from __future__ import annotations

import torch

from .face import EXTENT, SDF_CHANNELS, face_geometry, sample_face
from .params import COL, CM_WORLD, EAR_RY, FACE_ORIGIN_Z
from .sdf import capsule, ellipsoid, length3, shift, smin, sphere

HEAD_OFFSET = (0.0, -0.035, 0.0)  # places the eyes near the image centre, as in PanoHead crops
CM = CM_WORLD  # world units per face-mesh centimetre
FACE_ORIGIN = (0.0, -0.005, FACE_ORIGIN_Z)
CRANIUM_CENTER = (0.0, 0.075)  # x, y of the cranium ellipsoid; its z is per head (``cran_z``)
OFF = 10.0  # distance added to a switched-off part
FACE_SIDE_GAP = 0.002  # how far the face may reach past the cranium's outline seen from the front
# Ears: half-length and half-width (head-local units) at ``ear`` = 1 (a 6.1 x 3.5 cm ear); the
# centre half-way between brow and nose base, 1.2 cm behind the cranium's front-back middle
# (the tragion lies near the middle, the pinna behind it).
EAR_RZ = 0.036
EAR_CENTER = (0.022, -0.025)  # height (head-local y), front-back offset from ``cran_z``
# Neck, collar and shoulders sit under the cranium, so their z is relative to ``cran_z``.
NECK_TOP, NECK_BOTTOM = (0.0, -0.06, -0.01), (0.0, -0.5, -0.005)


class PointParams:
    """Each point's head parameters: a per-head table [B, P] and the points' rows ``head`` [M].

    A name is a column of the table or a per-head constant of :func:`per_head` (computed once per
    table, so the SDF does no arithmetic on parameters per point). Per-point columns are gathered
    on first use and kept, contiguous (1-D ops on them are fast). With ``head=None`` the table
    must hold one head, whose values then broadcast as 0-d tensors.
    """

    def __init__(self, table: torch.Tensor, head: torch.Tensor | None = None, _shared: dict | None = None):
        if head is None and table.shape[0] != 1:
            raise ValueError(f"PointParams without head indices needs one head, got {table.shape[0]}")
        self.table, self.head = table, head
        self._cols: dict[str, torch.Tensor] = {}
        self._shared = {} if _shared is None else _shared  # per-table data, shared with copies

    def __getitem__(self, name: str) -> torch.Tensor:
        col = self._cols.get(name)
        if col is None:
            if "by_col" not in self._shared:  # contiguous [B] rows: index_select on strided columns is slow
                self._shared["by_col"] = self.table.t().contiguous()
            if name in COL:
                col = self._shared["by_col"][COL[name]]
            else:
                if "per_head" not in self._shared:
                    self._shared["per_head"] = per_head(lambda k: self._shared["by_col"][COL[k]])
                col = self._shared["per_head"][name]
            col = col[0] if self.head is None else col.index_select(0, self.head)
            self._cols[name] = col
        return col

    def present(self, switch: str) -> bool:
        """Whether any head of the table has this part (one host sync per table and part)."""
        key = "present_" + switch
        if key not in self._shared:
            self._shared[key] = bool((self.table[:, COL[switch]] > 0).any())
        return self._shared[key]

    def repeat(self, k: int) -> PointParams:
        """The same heads for k concatenated copies of the points (e.g. finite-difference taps)."""
        return self if self.head is None else PointParams(self.table, self.head.repeat(k), self._shared)


def per_head(col) -> dict[str, torch.Tensor]:
    """Per-head constants of the SDF from ``col(name)`` -> [B]; inverse radii are ``i_*``."""
    rx, ry, rz, vol = col("cran_rx"), col("cran_ry"), col("cran_rz"), col("curtain_vol")
    sx, sy, sz, ear = col("face_sx"), col("face_sy"), col("face_sz"), col("ear")
    eye_r = 1.2 * col("eye_size")
    g = face_geometry()
    off = {f"{k}_off": OFF * (1 - col(f"{k}_on")) for k in ("cap", "curtain", "bun", "tail")}
    return {
        "i_scale": 1 / col("scale"), "i_fx": 1 / (CM * sx), "i_fy": 1 / (CM * sy), "i_fz": 1 / (CM * sz),
        "cm": CM * torch.minimum(torch.minimum(sx, sy), sz), "jaw_w1": col("jaw_w") - 1, "chin_s": 1 / col("chin") - 1,
        "nose1": col("nose") - 1, "lips_w": 0.3 * col("lips_full"), "brow_w": 0.25 * col("brow_ridge"),
        "cheek_w": 0.35 * col("cheek"), "i_rx": 1 / rx, "i_ry": 1 / ry, "i_rz": 1 / rz,
        "i_jaw_x": 1 / (0.118 * col("jaw_w")), "i_jaw_y": 1 / (0.095 * col("chin")),
        "ear_x": rx + 0.004, "i_ear_y": 1 / (EAR_RY * ear), "i_ear_z": 1 / (EAR_RZ * ear),
        "i_concha_y": 1 / (0.7 * EAR_RY * ear), "i_concha_z": 1 / (0.7 * EAR_RZ * ear),
        "eye_r": eye_r, "eye_z": float(g.eye_left[2]) - 0.3 - eye_r,
        "collar_r": col("neck_r") + 0.012, "hairline_y": 0.035 + col("hairline"),
        # bun and ponytail hang on the back of the cranium, wherever its length puts it
        "bun_z": col("cran_z") - 0.69 * rz - 0.077, "tail_z": col("cran_z") - 0.946 * rz - 0.036,
        "i_cu_x": 1 / (rx + vol), "i_cu_y": 1 / (ry + vol), "i_cu_z": 1 / (rz + vol),
        "hang": -(CRANIUM_CENTER[1] - col("curtain_bot")).clamp_min(0),
        "i_curl": 1 / (1 + 1.6 * col("curl_amp") * col("curl_freq")), **off,
    }


def columns(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[M, 3] points -> contiguous x, y, z columns."""
    return p.t().contiguous().unbind(0)


def wave(x, y, z, freq, phase) -> torch.Tensor:
    """Cheap smooth pseudo-noise in [-1, 1] (sum of three oblique sines)."""
    out = None
    for (a, b, c), f, ph, w in (((0.83, 0.41, 0.38), 1.0, 1.0, 1.0), ((-0.35, 0.77, 0.53), 1.71, 1.3, 0.6),
                                ((0.29, -0.46, 0.84), 2.93, 0.7, 0.35)):
        s = torch.add(x * a, y, alpha=b).add_(z, alpha=c).mul_(freq * f).add_(phase * ph).sin_()
        out = s if out is None else out.add_(s, alpha=w)
    return out.mul_(1 / 1.95)


def face_local(x, y, z, c: PointParams):
    """Head-local points -> face-mesh coordinates (cm), with per-identity jaw and chin warps."""
    qx = x * c["i_fx"]
    qy = shift(y, FACE_ORIGIN[1]).mul_(c["i_fy"])
    qz = shift(z, FACE_ORIGIN[2]).mul_(c["i_fz"])
    below = qy.mul(-1 / 9.0).clamp_(0, 1)
    qx = qx.div_(below.mul_(c["jaw_w1"]).add_(1))
    qy = qy + (qy + 4.0).clamp_max_(0).mul_(c["chin_s"])  # stretch the chin below q_y = -4
    return qx, qy, qz


def _face_cm(qx, qy, qz, c: PointParams, tex: torch.Tensor) -> torch.Tensor:
    h = torch.addcmul(tex[0], c["nose1"], tex[1]).addcmul_(c["lips_w"], tex[2]).addcmul_(c["brow_w"], tex[3])
    ax = qx.abs()
    cy = qy + 0.8
    cheek = (ax - 4.2).square_().addcmul_(cy, cy).mul_(-1 / 5.0).clamp_min_(-80).exp_()  # (no denormals)
    h = h.addcmul_(c["cheek_w"], cheek)
    slab = torch.maximum((qz - h).div_(tex[4]), (h - 7.0).sub_(qz))
    outside = (ax - EXTENT).clamp_min_(0).add_((qy.abs() - EXTENT).clamp_min_(0))
    return smin(slab.neg_(), (0.2 - tex[5]).sub_(outside), 0.6).neg_()  # only inside the face oval, softly


def _eyes_cm(qx, qy, qz, c: PointParams):
    """Both eyeballs as one sphere at |q_x| (the canonical mesh is mirror-symmetric, see tests)."""
    e = face_geometry().eye_left
    return length3(qx.abs().sub_(float(e[0])), qy - float(e[1]), qz - c["eye_z"]).sub_(c["eye_r"])


def _evaluate(x, y, z, c: PointParams, full: bool):
    """Distances of skin, eyes, cloth and hair (world units); with ``full`` also shading data."""
    s, inv = c["scale"], c["i_scale"]
    x, y, z = x * inv, shift(y, HEAD_OFFSET[1]).mul_(inv), z * inv
    cx, cy, cz = x, shift(y, CRANIUM_CENTER[1]), z - c["cran_z"]
    cran = ellipsoid(cx, cy, cz, c["i_rx"], c["i_ry"], c["i_rz"])
    qx, qy, qz = face_local(x, y, z, c)
    tex = sample_face(qx, qy) if full else sample_face(qx, qy, SDF_CHANNELS)
    # the face never reaches past the cranium's sides: an elliptic cylinder (along z) of the cranium's
    # x-y outline, upright below its equator (the canonical mesh is as wide as a narrow skull)
    side = ellipsoid(cx, cy.clamp_min(0.0), torch.zeros_like(cz), c["i_rx"], c["i_ry"], 0.0).sub_(FACE_SIDE_GAP)
    upper = smin(cran, torch.maximum(_face_cm(qx, qy, qz, c, tex).mul_(c["cm"]), side), 0.02)
    skin = smin(upper, ellipsoid(x, y + 0.085, z, c["i_jaw_x"], c["i_jaw_y"], 1 / 0.13), 0.03)
    ex, ey, ez = x.abs().sub_(c["ear_x"]), y - EAR_CENTER[0], cz - EAR_CENTER[1]
    concha = ellipsoid(ex - 0.012, ey, ez - 0.002, 1 / (0.7 * 0.011), c["i_concha_y"], c["i_concha_z"])
    ear = torch.maximum(ellipsoid(ex, ey, ez, 1 / 0.011, c["i_ear_y"], c["i_ear_z"]), concha.neg_())
    skin = smin(skin, ear, 0.006)
    skin = smin(skin, capsule(x, y, cz, NECK_TOP, NECK_BOTTOM, c["neck_r"]), 0.03)
    eyes_cm = _eyes_cm(qx, qy, qz, c)
    cloth = ellipsoid(x, y + 0.43, cz + 0.01, 1 / 0.36, 1 / 0.16, 1 / 0.15)
    cloth = smin(cloth, capsule(x, y, cz, (0.0, -0.3, NECK_TOP[2]), NECK_BOTTOM, c["collar_r"]), 0.03)
    hair = _hair(x, y, z, cx, cy, cz, c, upper)
    out = {"skin": skin.mul_(s), "eyes": eyes_cm.mul_(c["cm"]).mul_(s), "cloth": cloth.mul_(s), "hair": hair.mul_(s)}
    if full:
        out.update(x=x, y=y, z=z, qx=qx, qy=qy, qz=qz, tex=tex)
    return out


def _union(a, b):
    """smin(a, b, 0.02) where None is a part absent from the batch (exact: an off part is 10 away)."""
    return b if a is None else a if b is None else smin(a, b, 0.02)


def _hair(x, y, z, cx, cy, cz, c: PointParams, upper):
    """Scalp cap, curtain, bun, ponytail and curls; parts no head of the batch has are skipped."""
    parts = {}
    if c.present("cap_on"):
        plane = torch.add(y, z, alpha=-0.675).sub_(c["hairline_y"]).mul_(1 / 1.2066)
        thick = y.sub(0.02).mul_(1 / 0.2).clamp_(0, 1).mul_(0.9).add_(0.55).mul_(c["cap_thick"])  # fuller on top
        parts["cap"] = torch.maximum(upper - thick, plane.neg_())
    if c.present("curtain_on"):
        hang = cy - torch.maximum(cy.clamp_max(0), c["hang"])  # the ellipse stretched down to curtain_bot
        curtain = torch.maximum(ellipsoid(cx, hang, cz, c["i_cu_x"], c["i_cu_y"], c["i_cu_z"]), c["curtain_bot"] - y)
        zc = y.mul(-1 / 0.06).sub_(0.09 / 0.06).clamp_(0, 1).mul_(-0.1).add_(0.035)  # behind the neck below the chin
        cut = torch.maximum(zc.sub_(z), y - c["fringe_y"])
        parts["curtain"] = torch.maximum(curtain, cut.neg_())
    if c.present("bun_on"):
        parts["bun"] = sphere(x, y, z, (0.0, 0.22, c["bun_z"]), c["bun_r"])
    if c.present("tail_on"):
        tl = c["tail_len"]
        tz = c["tail_z"]
        parts["tail"] = capsule(x, y, z, (0.0, 0.14, tz), (0.0, 0.12 - tl, tz - 0.05 - 0.1 * tl), 0.036)
    parts = {k: v.add_(c[k + "_off"]) for k, v in parts.items()}  # + OFF where the part is off
    hair = _union(_union(parts.get("cap"), parts.get("curtain")), _union(parts.get("bun"), parts.get("tail")))
    if hair is None:
        return torch.full_like(upper, OFF)
    if c.present("curl_amp"):
        hair = hair.addcmul_(c["curl_amp"], wave(x, y, z, c["curl_freq"], c["phase"])).mul_(c["i_curl"])
    return hair  # (divided by the curl slope: keeps a distance bound for the tracer)


def sdf_columns(x, y, z, c: PointParams) -> torch.Tensor:
    d = _evaluate(x, y, z, c, full=False)
    return torch.minimum(torch.minimum(d["skin"], d["eyes"]), torch.minimum(d["cloth"], d["hair"]))


def sdf(p: torch.Tensor, c: PointParams) -> torch.Tensor:
    """Signed distance at points p [M, 3]."""
    return sdf_columns(*columns(p), c)


def components(p: torch.Tensor, c: PointParams) -> dict:
    """Part distances (world units) plus head-local and face-local data for :func:`albedo`."""
    return _evaluate(*columns(p), c, full=True)


MATERIALS = ("skin", "eyes", "cloth", "hair")


def albedo(d: dict, c: PointParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point albedo [M, 3] and material id [M] (index into MATERIALS) at surface points."""
    mat = torch.stack([d[m] for m in MATERIALS], -1).argmin(-1)
    x, y, z, qx, qy, qz = (d[k] for k in ("x", "y", "z", "qx", "qy", "qz"))
    rgb = lambda k: torch.stack([c[f"{k}_r"], c[f"{k}_g"], c[f"{k}_b"]], -1)  # noqa: E731
    col = lambda v: v.unsqueeze(-1)  # noqa: E731
    phase = c["phase"]
    skin_c, hair_c = rgb("skin"), rgb("hair")
    front = ((qz + 1.0) / 2.0).clamp(0, 1)  # face markings only on the face, not the back
    lips, brows, oval, lipline, eyelid = (d["tex"][i] * front for i in (2, 3, 6, 7, 8))
    skin = skin_c * (1 + 0.025 * col(wave(x, y, z, 220.0, phase)))
    skin = torch.lerp(skin, rgb("lip"), col(lips.clamp(0, 1)))
    skin = skin * (1 - 0.55 * col(lipline.clamp(0, 1)))
    lash = (eyelid * (1 - eyelid) * 4).clamp(0, 1)  # dark rim around the eye opening
    skin = torch.lerp(skin, skin * 0.25, 0.8 * col(lash))
    brow_c = torch.lerp(hair_c, torch.full_like(hair_c, 0.03), 0.4)
    skin = torch.lerp(skin, brow_c, col((brows * c["brow_dark"]).clamp(0, 1)))
    cheek = front * torch.exp((-((qx.abs() - 4.0) ** 2 + (qy + 1.2) ** 2) / 4.0).clamp_min(-80))
    blush_c = skin * torch.tensor([1.1, 0.75, 0.75], device=x.device)
    skin = torch.lerp(skin, blush_c, col(0.5 * c["blush"] * cheek))
    beard_zone = (-1.8 - qy).clamp(0, 1) * oval * (1 - lips).clamp(0, 1)
    beard = (c["beard"] * beard_zone * (0.75 + 0.25 * wave(x, y, z, 900.0, phase))).clamp(0, 1)
    skin = torch.lerp(skin, hair_c * 0.8, col(beard))
    eye = _eye_colour(qx, qy, qz, c, skin)
    strands = 0.5 + 0.5 * torch.sin(c["strand_freq"] * (x * 0.95 + z * 0.3) + 3 * wave(x, y, z, 25.0, phase))
    hair = hair_c * col((0.7 + 0.45 * strands) * (1 + 0.15 * wave(x, y, z, 90.0, phase)))
    buzz = col((1 - c["cap_thick"] / 0.008).clamp(0, 1) * 0.55)
    hair = torch.lerp(hair, skin_c, buzz)
    cloth = rgb("cloth") * col(1 + 0.08 * wave(x, y, z, 160.0, phase))
    out = torch.stack([skin, eye, cloth, hair], 1).gather(1, mat.view(-1, 1, 1).expand(-1, 1, 3)).squeeze(1)
    return out.clamp(0, 1), mat


def _eye_colour(qx, qy, qz, c: PointParams, like):
    """Sclera, iris and pupil from the angle between the eyeball radius and the gaze direction."""
    e = face_geometry().eye_left
    vx = qx - float(e[0]) * torch.where(qx > 0, 1.0, -1.0)  # the nearer eye (x = 0 counts as the right one)
    vy, vz = qy - float(e[1]), qz - c["eye_z"]
    gx, gy = c["gaze_x"], c["gaze_y"]
    cosg = (vx * gx + vy * gy + vz) / (length3(vx, vy, vz).clamp_min(1e-6) * (gx * gx + gy * gy + 1).sqrt())
    iris = ((cosg - 0.86) / 0.015).clamp(0, 1).unsqueeze(-1)
    pupil = ((cosg - 0.965) / 0.01).clamp(0, 1).unsqueeze(-1)
    sclera = torch.tensor([0.78, 0.75, 0.7], device=qx.device).expand_as(like)
    iris_c = torch.stack([c["iris_r"], c["iris_g"], c["iris_b"]], -1)
    return torch.lerp(torch.lerp(sclera, iris_c.expand_as(like), iris), torch.full_like(like, 0.02), pupil)


BOUND_CENTER = (0.0, -0.15, -0.02)
BOUND_RADIUS = 0.62


def face_landmarks(record: dict) -> torch.Tensor:
    """The 68 face landmarks (dlib numbering) of one head, world units [68, 3]: the pose template's
    points (on the canonical face mesh) taken through the inverse of :func:`face_local` (chin
    stretch, jaw warp, face scale) and the head's scale and offset. Ground truth for landmark-based
    measurements such as :func:`psohead.metrics.geometry.head_proportions`."""
    from ..io.facemesh import template

    q = torch.as_tensor(template(68), dtype=torch.float64)
    chin, jaw_w, s = record["chin"], record["jaw_w"], record["scale"]
    qy = torch.where(q[:, 1] < -4.0, (q[:, 1] + 4.0) * chin - 4.0, q[:, 1])  # undo the chin stretch
    below = (-qy / 9.0).clamp(0, 1)
    qx = q[:, 0] * (1 + below * (jaw_w - 1))  # undo the jaw warp
    local = torch.stack([qx * CM * record["face_sx"], qy * CM * record["face_sy"] + FACE_ORIGIN[1],
                         q[:, 2] * CM * record["face_sz"] + FACE_ORIGIN[2]], -1)
    return local * s + torch.tensor(HEAD_OFFSET, dtype=torch.float64)
