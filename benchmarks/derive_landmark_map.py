"""Derive which MediaPipe canonical-mesh vertex each dlib 68 landmark corresponds to.

Runs dlib's 68-point predictor and MediaPipe face_mesh on the same faces (the three official
sample crops, the astronaut and their mirror images) and, for each dlib point, votes for the
nearest of the 468 mesh landmarks. Writes src/psohead/assets/dlib68_facemesh_index.npy.
Jaw points (0-16) follow the silhouette, so their match is only indicative; pose fitting skips them.
"""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
from PIL import Image

from psohead.preprocess.landmarks import detect_faces

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "panohead_samples" / "img"


def main() -> None:
    import skimage.data
    from mediapipe.python.solutions import face_mesh

    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.jpg"))]
    images.append(skimage.data.astronaut())
    images += [im[:, ::-1].copy() for im in images]
    votes = [collections.Counter() for _ in range(68)]
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        for im in images:
            faces = detect_faces(im)
            res = mesh.process(im)
            if not faces or not res.multi_face_landmarks:
                continue
            h, w = im.shape[:2]
            mp = np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark[:468]])
            for i, p in enumerate(faces[0].landmarks):
                votes[i][int(np.argmin(((mp - p) ** 2).sum(1)))] += 1
    index = np.array([v.most_common(1)[0][0] for v in votes], dtype=np.int16)
    out = ROOT / "src" / "psohead" / "assets" / "dlib68_facemesh_index.npy"
    np.save(out, index)
    print(index.tolist())


if __name__ == "__main__":
    main()
