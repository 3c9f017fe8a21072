#!/usr/bin/env bash
# Installs (if needed) and starts the local web page: bash scripts/app.sh [psohead app options]
# (default: the bundled model on http://127.0.0.1:7860; see docs/app.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
exec psohead app "$@"
