"""Mesh files viewers and engines open: binary glTF (.glb), Wavefront OBJ + MTL + PNG, PLY.

Written directly (not through trimesh) so the GLB holds exactly POSITION, NORMAL and TEXCOORD_0
(or COLOR_0) with a metallic-roughness material whose base colour is the PNG as encoded once, and
the OBJ names its material file and texture the way Blender's and three.js's loaders expect.
Arrays come in the file's units already; UVs use the texture's image rows (v down, glTF's
convention), OBJ stores 1 - v.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, write_text

GENERATOR = "psohead"
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125        # glTF component types
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP = 9729, 9987, 33071


def png_bytes(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 [H,W,3] image as PNG bytes. zlib level 1 by default: textures encode several times
    faster than at PIL's default level for files a little larger (BENCHMARKS.md, meshes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, *, uv: np.ndarray | None = None,
              texture_png: bytes | None = None, colors: np.ndarray | None = None, roughness: float = 0.8,
              name: str = "head") -> bytes:
    """One-mesh binary glTF 2.0: POSITION, NORMAL and TEXCOORD_0 with the PNG as base colour
    texture (``uv`` + ``texture_png``) or COLOR_0 (``colors`` uint8 [V,3|4]); metallic 0."""
    if (uv is None) != (texture_png is None):
        raise ValueError("a textured GLB needs both uv and texture_png")
    blob = bytearray()
    views, accessors = [], []

    def add_view(data: bytes, target: int | None) -> int:
        while len(blob) % 4:
            blob.append(0)
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        blob.extend(data)
        views.append(view)
        return len(views) - 1

    def add_accessor(array: np.ndarray, kind: str, component: int, target: int, normalized: bool = False,
                     bounds: bool = False) -> int:
        acc = {"bufferView": add_view(array.tobytes(), target), "componentType": component,
               "count": int(array.shape[0]), "type": kind}
        if normalized:
            acc["normalized"] = True
        if bounds:  # required for POSITION
            acc["min"] = array.min(0).astype(float).tolist()
            acc["max"] = array.max(0).astype(float).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {
        "POSITION": add_accessor(np.ascontiguousarray(vertices, "<f4"), "VEC3", _FLOAT, _ARRAY_BUFFER, bounds=True),
        "NORMAL": add_accessor(np.ascontiguousarray(normals, "<f4"), "VEC3", _FLOAT, _ARRAY_BUFFER),
    }
    pbr = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": float(roughness)}
    doc = {"asset": {"version": "2.0", "generator": GENERATOR}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"mesh": 0, "name": name}]}
    if uv is not None:
        attributes["TEXCOORD_0"] = add_accessor(np.ascontiguousarray(uv, "<f4"), "VEC2", _FLOAT, _ARRAY_BUFFER)
    elif colors is not None:
        c = np.ascontiguousarray(colors, np.uint8)
        attributes["COLOR_0"] = add_accessor(c, "VEC4" if c.shape[1] == 4 else "VEC3", _UBYTE, _ARRAY_BUFFER,
                                             normalized=True)
    indices = add_accessor(np.ascontiguousarray(faces, "<u4").reshape(-1, 1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER)
    if texture_png is not None:
        doc["images"] = [{"bufferView": add_view(texture_png, None), "mimeType": "image/png", "name": f"{name}_albedo"}]
        doc["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR, "wrapS": _CLAMP, "wrapT": _CLAMP}]
        doc["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    doc["materials"] = [{"name": name, "pbrMetallicRoughness": pbr}]
    doc["meshes"] = [{"name": name, "primitives": [{"attributes": attributes, "indices": indices, "material": 0,
                                                    "mode": 4}]}]
    while len(blob) % 4:
        blob.append(0)
    doc["buffers"] = [{"byteLength": len(blob)}]
    doc["bufferViews"] = views
    doc["accessors"] = accessors
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(text), b"JSON") + text
            + struct.pack("<I4s", len(blob), b"BIN\0") + bytes(blob))


def write_glb(path, vertices, faces, normals, **kwargs) -> Path:
    """:func:`glb_bytes` written atomically to ``path``."""
    path = Path(path)
    data = glb_bytes(vertices, faces, normals, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _rows(prefix: str, array: np.ndarray, fmt: str) -> str:
    """One text line per row of ``array``: one %-format over the whole array (savetxt formats
    row by row, several times slower)."""
    return (f"{prefix} {fmt}\n" * len(array)) % tuple(np.asarray(array).ravel().tolist())


def obj_text(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, *, uv: np.ndarray | None = None,
             mtl_name: str | None = None, material: str = "head", colors: np.ndarray | None = None,
             comment: str = "") -> str:
    """Wavefront OBJ with v / vt / vn sharing one index per corner; ``colors`` uint8 [V,3+] are
    written as the common ``v x y z r g b`` extension (untextured meshes)."""
    head = [f"# {line}" for line in comment.splitlines()]
    if mtl_name:
        head.append(f"mtllib {mtl_name}")
    head.append("o head")
    parts = ["\n".join(head) + "\n"]
    if colors is not None:
        parts.append(_rows("v", np.hstack([vertices, colors[:, :3] / 255.0]), "%.6f %.6f %.6f %.4f %.4f %.4f"))
    else:
        parts.append(_rows("v", vertices, "%.6f %.6f %.6f"))
    if uv is not None:
        parts.append(_rows("vt", np.stack([uv[:, 0], 1 - uv[:, 1]], 1), "%.6f %.6f"))
    parts.append(_rows("vn", normals, "%.5f %.5f %.5f"))
    if mtl_name:
        parts.append(f"usemtl {material}\n")
    f = np.asarray(faces, np.int64) + 1
    corner = "%d/%d/%d" if uv is not None else "%d//%d"
    if uv is not None:
        cols = np.repeat(f, 3, axis=1)
    else:
        cols = np.repeat(f, 2, axis=1)
    parts.append(_rows("f", cols, " ".join([corner] * 3)))
    return "".join(parts)


def mtl_text(texture_name: str, material: str = "head", roughness: float = 0.8) -> str:
    """MTL for one diffuse-textured material (Pr / Pm: the PBR extension Blender reads)."""
    return (f"newmtl {material}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
            f"Ns 10.0\nd 1.0\nillum 1\nPr {roughness:.3f}\nPm 0.000\nmap_Kd {texture_name}\n")


def write_obj(path, vertices, faces, normals, *, uv=None, texture_png: bytes | None = None, colors=None,
              roughness: float = 0.8, comment: str = "") -> list[Path]:
    """OBJ at ``path``; with a texture also ``<stem>.mtl`` and ``<stem>_albedo.png`` beside it
    (written first, so the OBJ never names files that are not there). Returns the paths written."""
    path = Path(path)
    written = []
    mtl_name = None
    if texture_png is not None:
        png = path.with_name(f"{path.stem}_albedo.png")
        with atomic_path(png) as tmp:
            tmp.write_bytes(texture_png)
        mtl = path.with_suffix(".mtl")
        write_text(mtl, mtl_text(png.name, roughness=roughness))
        written += [png, mtl]
        mtl_name = mtl.name
    write_text(path, obj_text(vertices, faces, normals, uv=uv, mtl_name=mtl_name, colors=colors, comment=comment))
    return written + [path]


def write_ply(path, vertices, faces, normals, colors) -> Path:
    """Binary little-endian PLY with per-vertex normal and RGBA colour."""
    path = Path(path)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment {GENERATOR}\nelement vertex {len(vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property float nx\nproperty float ny\nproperty float nz\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    vdt = np.dtype([("p", "<f4", 3), ("n", "<f4", 3), ("c", "u1", 4)])
    vbuf = np.empty(len(vertices), vdt)
    vbuf["p"], vbuf["n"] = vertices, normals
    c = np.asarray(colors, np.uint8)
    vbuf["c"] = c if c.shape[1] == 4 else np.hstack([c, np.full((len(c), 1), 255, np.uint8)])
    fdt = np.dtype([("k", "u1"), ("i", "<i4", 3)])
    fbuf = np.empty(len(faces), fdt)
    fbuf["k"], fbuf["i"] = 3, faces
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode() + vbuf.tobytes() + fbuf.tobytes())
    return path
