#!/usr/bin/env bash
# Installs (if needed) and reconstructs the bundled sample photo with the bundled default model.
# Usage: bash scripts/demo.sh [PHOTO] [OUT_DIR]   (defaults: examples/astronaut.jpg, out/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
photo=${1:-examples/astronaut.jpg}
out=${2:-out/demo}
psohead reconstruct "$photo" --out "$out" --network default
echo "outputs: $(cd "$out" && pwd) (open report.html; head.glb/head.ply/head.obj, turntable.mp4, views.png)"
