"""Import a psohead mesh into Blender and render it from the front, headless.

    blender -b --factory-startup --python scripts/blender_preview.py -- head.glb preview.png

Prints the mesh's size (Blender's axes: Z up, the face toward -Y once a Y-up file is imported),
its UV layers and the textures of its material, then writes a 400² front view lit flat, so that
what a Blender user sees can be checked without opening the program.
"""
import math
import sys

import bpy
import mathutils
import numpy as np

np.bool = bool  # the glTF add-on of Debian's Blender 3.4 still uses this alias, gone from numpy 1.24

mesh_path, out_path = sys.argv[sys.argv.index("--") + 1:][:2]
bpy.ops.wm.read_factory_settings(use_empty=True)
if mesh_path.endswith((".glb", ".gltf")):
    bpy.ops.import_scene.gltf(filepath=mesh_path)
else:
    bpy.ops.wm.obj_import(filepath=mesh_path)
obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
corners = [obj.matrix_world @ mathutils.Vector(c) for c in obj.bound_box]
lo = [min(v[i] for v in corners) for i in range(3)]
hi = [max(v[i] for v in corners) for i in range(3)]
print(f"{obj.name}: {len(obj.data.vertices)} vertices, {len(obj.data.uv_layers)} UV layer(s); "
      "size x/y/z " + " / ".join(f"{(b - a) * 100:.1f}" for a, b in zip(lo, hi)) + " cm")
for mat in obj.data.materials:
    textures = [f"{n.image.name} {n.image.size[0]}x{n.image.size[1]}" for n in mat.node_tree.nodes
                if n.type == "TEX_IMAGE" and n.image]
    print(f"material {mat.name}: {', '.join(textures) or 'no texture'}")

centre = [(a + b) / 2 for a, b in zip(lo, hi)]
extent = max(b - a for a, b in zip(lo, hi))
camera = bpy.data.objects.new("front", bpy.data.cameras.new("front"))
bpy.context.scene.collection.objects.link(camera)
camera.location = (centre[0], centre[1] - 3 * extent, centre[2])  # Blender's front view looks along +Y
camera.rotation_euler = (math.pi / 2, 0, 0)
scene = bpy.context.scene
scene.camera = camera
scene.world = bpy.data.worlds.new("grey")
scene.world.color = (0.8, 0.8, 0.8)
scene.render.engine = "BLENDER_WORKBENCH"
scene.display.shading.light = "FLAT"  # the texture carries the network's own lighting
scene.display.shading.color_type = "TEXTURE"
scene.render.resolution_x = scene.render.resolution_y = 400
scene.render.filepath = out_path
bpy.ops.render.render(write_still=True)
