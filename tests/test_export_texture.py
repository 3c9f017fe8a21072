"""Textured head meshes on a stand-in generator whose renders show a painted sphere of known colour:
the baked texture is read back at known surface points, the photo replaces it where it sees the
surface, the files load back (trimesh and pygltflib) with the attributes and material viewers need."""
import json

import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from export_standins import PaintedSphereG, painted
from psohead.camera import HEAD_LOOKAT, label_from_yaw_pitch
from psohead.errors import InputError
from psohead.export.mesh import MeshOptions, build_head_mesh, read_photo, write_head_meshes
from psohead.export.texture import bake_views

WS = torch.zeros(1, 14, 32)
OPTIONS = dict(resolution=40, texture_size=256, bake_views=8, scale=0.5)
GREEN = torch.tensor([0.1, 0.8, 0.2])


@pytest.fixture(scope="module")
def head():
    return build_head_mesh(PaintedSphereG(res=48), WS, MeshOptions(**OPTIONS), progress=False)


def surface_samples(head, n=4000, seed=0):
    """Random points on the mesh (world), their texture colour (nearest texel) and normal."""
    a = head.atlas
    rng = np.random.default_rng(seed)
    f = rng.integers(0, len(a.faces), n)
    b = rng.dirichlet((4, 4, 4), n)  # away from the triangle edges
    tri = a.faces[f]
    p = (b[..., None] * a.vertices[tri]).sum(1)
    uv = (b[..., None] * a.uv[tri]).sum(1)
    s = head.texture.shape[0]
    ij = np.clip((uv * s).astype(int), 0, s - 1)
    return p, head.texture[ij[:, 1], ij[:, 0]] / 255.0


def test_baked_texture_has_the_painted_colours(head):
    G = PaintedSphereG()
    p, colour = surface_samples(head)
    # the painting at the nearest point of the sphere the renders show
    on_sphere = G.center + G.radius * torch.nn.functional.normalize(torch.tensor(p, dtype=torch.float32) - G.center, dim=-1)
    expect = painted(on_sphere, G.center).numpy()
    err = np.abs(colour - expect).max(1)
    assert np.median(err) < 0.02 and np.quantile(err, 0.95) < 0.06
    # the feature field is flat grey: a texture that fell back to it would be far off
    assert np.abs(expect - 0.5).max(1).mean() > 0.15
    assert head.info["texels_unseen"] == 0 and head.info["bake_views"] == 8 + 3 + 3
    # the PLY's vertex colours are the texture's
    expect_v = painted(torch.tensor(head.vertices), G.center).numpy()
    assert np.median(np.abs(head.colors[:, :3] / 255.0 - expect_v).max(1)) < 0.03


def test_texture_from_photo_replaces_what_the_photo_sees():
    front = label_from_yaw_pitch(0.0, 0.0, lookat=HEAD_LOOKAT)
    G = PaintedSphereG(res=48)
    photo_maker = PaintedSphereG(paint=lambda p, c: GREEN.expand(len(p), 3))
    rgb = photo_maker.trace(front, 128)[0][0]
    photo = Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    head = build_head_mesh(G, WS, MeshOptions(**OPTIONS, texture_from_photo=True), photo=(photo, front),
                           progress=False)
    p, colour = surface_samples(head)
    n = (p - G.center.numpy()) / np.linalg.norm(p - G.center.numpy(), axis=1, keepdims=True)
    to_cam = front[0, [3, 7, 11]].numpy() - p
    cos = (n * to_cam).sum(1) / np.linalg.norm(to_cam, axis=1)
    seen = cos > 0.8
    assert seen.sum() > 100 and np.abs(colour[seen] - GREEN.numpy()).max(1).mean() < 0.03
    hidden = cos < 0
    expect = painted(torch.tensor(p[hidden], dtype=torch.float32), G.center).numpy()
    assert np.median(np.abs(colour[hidden] - expect).max(1)) < 0.02
    assert head.info["from_photo"] and head.info["texels_from_photo"] > 0


def test_uvs_in_the_unit_square_without_overlapping_charts(head):
    a = head.atlas
    assert a.uv.min() >= 0 and a.uv.max() <= 1
    s = head.texture.shape[0]
    # independent coverage count: texel centres strictly inside each UV triangle
    count = np.zeros((s, s), np.int32)
    uv = a.uv.astype(np.float64) * s
    for tri in uv[a.faces]:
        lo = np.maximum(np.floor(tri.min(0) - 0.5).astype(int), 0)
        hi = np.minimum(np.ceil(tri.max(0) + 0.5).astype(int), s)
        ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]] + 0.5
        p = np.stack([xs.ravel(), ys.ravel()], 1)
        (x0, y0), (x1, y1), (x2, y2) = tri
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if abs(area) < 1e-12:
            continue
        e0 = ((x2 - x1) * (p[:, 1] - y1) - (y2 - y1) * (p[:, 0] - x1)) / area
        e1 = ((x0 - x2) * (p[:, 1] - y2) - (y0 - y2) * (p[:, 0] - x2)) / area
        inside = (e0 > 1e-6) & (e1 > 1e-6) & (1 - e0 - e1 > 1e-6)
        np.add.at(count, (p[inside, 1].astype(int), p[inside, 0].astype(int)), 1)
    assert count.max() == 1 and (count > 0).mean() > 0.3


def test_files_load_back_with_attributes_material_and_texture(head, tmp_path):
    info = write_head_meshes(PaintedSphereG(res=48), WS, tmp_path, MeshOptions(**OPTIONS), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.glb", "head.mtl", "head.obj", "head.ply",
                                                          "head_albedo.png"]
    assert info["files"] == {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    json.dumps(info)
    albedo = np.asarray(Image.open(tmp_path / "head_albedo.png"))
    assert albedo.shape == (256, 256, 3)
    centre = PaintedSphereG().center.numpy() * 0.5

    # GLB through pygltflib: the accessors and material a viewer reads
    gltf = pygltflib.GLTF2().load(str(tmp_path / "head.glb"))
    prim = gltf.meshes[0].primitives[0]
    assert prim.attributes.POSITION is not None and prim.attributes.NORMAL is not None
    assert prim.attributes.TEXCOORD_0 is not None and prim.attributes.COLOR_0 is None
    pbr = gltf.materials[prim.material].pbrMetallicRoughness
    assert pbr.metallicFactor == 0 and 0.5 <= pbr.roughnessFactor <= 1
    image = gltf.images[gltf.textures[pbr.baseColorTexture.index].source]
    assert image.mimeType == "image/png"
    blob = gltf.binary_blob()

    def read(accessor, dtype, width):
        acc = gltf.accessors[accessor]
        view = gltf.bufferViews[acc.bufferView]
        data = np.frombuffer(blob, dtype, acc.count * width, view.byteOffset + (acc.byteOffset or 0))
        return data.reshape(acc.count, width)

    view = gltf.bufferViews[image.bufferView]
    embedded = Image.open(__import__("io").BytesIO(blob[view.byteOffset:view.byteOffset + view.byteLength]))
    assert np.array_equal(np.asarray(embedded), albedo)
    pos = read(prim.attributes.POSITION, "<f4", 3)
    nrm = read(prim.attributes.NORMAL, "<f4", 3)
    uv = read(prim.attributes.TEXCOORD_0, "<f4", 2)
    acc = gltf.accessors[prim.attributes.POSITION]
    assert np.allclose(acc.min, pos.min(0)) and np.allclose(acc.max, pos.max(0))
    r = np.linalg.norm(pos - centre, axis=1)
    assert abs(r.mean() - PaintedSphereG().radius * 0.5) < 0.005       # metres at scale 0.5
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-3)
    assert ((nrm * (pos - centre)).sum(1) > 0).mean() > 0.99           # outward
    assert uv.min() >= 0 and uv.max() <= 1
    # the GLB's uv (v down) sample the painting: nearest texel against the sphere's colour
    ij = np.clip((uv * 256).astype(int), 0, 255)
    expect = painted(torch.tensor(pos / 0.5, dtype=torch.float32), PaintedSphereG().center).numpy()
    assert np.median(np.abs(albedo[ij[:, 1], ij[:, 0]] / 255.0 - expect).max(1)) < 0.03

    # trimesh reads the same mesh and texture
    (glb,) = trimesh.load(tmp_path / "head.glb", process=False).geometry.values()
    assert isinstance(glb.visual, trimesh.visual.TextureVisuals)
    assert glb.visual.material.baseColorTexture.size == (256, 256)
    assert np.allclose(glb.vertices, pos) and np.allclose(glb.visual.uv[:, 1], 1 - uv[:, 1])

    # OBJ names its MTL, the MTL its PNG; trimesh follows them to the texture
    lines = (tmp_path / "head.obj").read_text().splitlines()
    assert "mtllib head.mtl" in lines and "usemtl head" in lines
    assert "map_Kd head_albedo.png" in (tmp_path / "head.mtl").read_text().splitlines()
    obj = trimesh.load(tmp_path / "head.obj", process=False)
    assert obj.visual.material.image.size == (256, 256) and len(obj.faces) == len(head.atlas.faces)
    assert obj.visual.uv.min() >= 0 and obj.visual.uv.max() <= 1
    ply = trimesh.load(tmp_path / "head.ply", process=False)
    assert len(ply.vertices) == len(head.vertices) and ply.is_watertight
    assert np.allclose(ply.visual.vertex_colors, head.colors)


def test_untextured_meshes_carry_vertex_colours_and_drop_old_material_files(tmp_path):
    G = PaintedSphereG(res=48)
    write_head_meshes(G, WS, tmp_path, MeshOptions(**OPTIONS), progress=False)
    info = write_head_meshes(G, WS, tmp_path, MeshOptions(**OPTIONS, texture=False), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.glb", "head.obj", "head.ply"]
    assert info["texture_size"] is None and "bake" not in info["seconds"]
    gltf = pygltflib.GLTF2().load(str(tmp_path / "head.glb"))
    prim = gltf.meshes[0].primitives[0]
    assert prim.attributes.COLOR_0 is not None and prim.attributes.TEXCOORD_0 is None and not gltf.images
    assert gltf.materials[0].pbrMetallicRoughness.metallicFactor == 0
    assert "mtllib" not in (tmp_path / "head.obj").read_text()


def test_renders_use_the_offset_and_overrides_and_report_progress():
    G = PaintedSphereG(res=32)
    delta = torch.tensor([[0.01, -0.02, 0.03]])
    events = []
    opts = MeshOptions(**{**OPTIONS, "bake_views": 3}, render_batch=2)
    build_head_mesh(G, WS, opts, delta=delta, render_overrides={"ray_start": 2.35}, progress=events.append)
    assert G.overrides == {"ray_start": 2.35}
    seen = torch.cat(G.cameras)
    expect, _ = bake_views(3, delta=delta)
    assert torch.allclose(seen, expect) and G.calls == [2, 2, 1]
    assert {e.stage for e in events} == {"mesh"}
    assert [(e.step, e.total) for e in events[-4:]] == [(0, 3), (1, 3), (2, 3), (3, 3)]  # 5 views, 2 a batch


@pytest.mark.parametrize("kwargs, message", [
    (dict(resolution=4), "resolution must be an integer >= 8"),
    (dict(faces=-1), "faces must be an integer >= 0"),
    (dict(faces=50), "at least 100"),
    (dict(texture_size=1000), "power of two"),
    (dict(texture_size=128), "power of two from 256"),
    (dict(texture_size=0), "power of two from 256"),
    (dict(texture_size=16384), "power of two from 256 to 8192"),
    (dict(render_batch=True), "render_batch must be"),
    (dict(level="high"), "level must be 'auto'"),
    (dict(level=-2.0), "level must be 'auto'"),
    (dict(crop="tight"), "crop must be"),
    (dict(texture=False, texture_from_photo=True), "texture_from_photo needs the texture"),
    (dict(scale=0), "scale must be a positive"),
    (dict(roughness=2), "roughness must be in"),
    (dict(bake_views=0), "bake_views must be"),
])
def test_bad_options_are_one_clear_error(kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        MeshOptions(**kwargs)
    assert "\n" not in str(err.value) and str(err.value).startswith("mesh options: ")


def test_photo_inputs(tmp_path):
    G = PaintedSphereG(res=32)
    with pytest.raises(InputError, match="needs the input photo"):
        build_head_mesh(G, WS, MeshOptions(**OPTIONS, texture_from_photo=True), progress=False)
    with pytest.raises(InputError, match="PIL image"):
        build_head_mesh(G, WS, MeshOptions(**OPTIONS, texture_from_photo=True), photo=(np.zeros((4, 4, 3)),
                        label_from_yaw_pitch(0.0)), progress=False)
    with pytest.raises(InputError, match="no photo crop"):
        read_photo(tmp_path)
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "crop.png")
    with pytest.raises(InputError, match="no camera label"):
        read_photo(tmp_path)
    label = label_from_yaw_pitch(0.2)
    (tmp_path / "label.json").write_text(json.dumps({"label": [str(v) for v in label[0].tolist()]}))
    image, got = read_photo(tmp_path / "crop.png")
    assert image.size == (64, 64) and torch.allclose(got, label, atol=1e-6)
