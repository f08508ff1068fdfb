#!/usr/bin/env bash
# THE test command (README, .ci/run): installs dependencies, builds, runs the whole GoogleTest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
