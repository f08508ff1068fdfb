#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of cairn from Debian packages. Idempotent:
# packages already present are skipped. Needs root (or sudo). Set CAIRN_SKIP_TORCH=1 to leave out
# PyTorch (used only by the interoperability test and the comparison benchmarks).
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config ninja-build
  libeigen3-dev                       # CPU GEMMs
  libsentencepiece-dev sentencepiece  # tokenizer
  libcxxopts-dev                      # command line
  nlohmann-json3-dev                  # JSON
  zlib1g-dev                          # .gz input
  libgtest-dev libgmock-dev           # tests
  libbenchmark-dev                    # Google Benchmark
)
if [ "${CAIRN_SKIP_TORCH:-0}" != 1 ]; then
  pkgs+=(python3 python3-numpy python3-torch python3-sentencepiece libopenblas0-pthread)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
