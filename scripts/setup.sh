#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of cairn: Debian packages, then (unless
# CAIRN_SKIP_TORCH=1) the Python references of the tests in .venv (scripts/requirements-ref.txt, from
# PyPI, over Debian's torch and numpy). Idempotent: what is present is skipped. Needs root (or sudo).
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config ninja-build
  libeigen3-dev                       # CPU GEMMs
  libsentencepiece-dev sentencepiece  # tokenizer
  libcxxopts-dev                      # command line
  libcpp-httplib-dev                  # HTTP server of `cairn serve` (and the client of its tests and bench)
  nlohmann-json3-dev                  # JSON
  zlib1g-dev                          # .gz input
  libgtest-dev libgmock-dev           # tests
  libbenchmark-dev                    # Google Benchmark
  libpcre2-dev                        # Unicode regexes of byte-level BPE pre-tokenizers
  libopenmpi-dev openmpi-bin          # data-parallel training (mpirun) and its tests
  libdnnl-dev                         # oneDNN: bf16 CPU GEMMs (--cpu-math bf16)
  clang libclang-rt-dev libomp-dev    # scripts/fuzz.sh: libFuzzer + ASan/UBSan runtimes, OpenMP for clang
)
if [ "${CAIRN_SKIP_TORCH:-0}" != 1 ]; then
  pkgs+=(python3 python3-numpy python3-torch python3-sentencepiece python3-venv python3-pip libopenblas0-pthread)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${CAIRN_SKIP_TORCH:-0}" != 1 ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  venv="$here/.venv"
  req="$here/scripts/requirements-ref.txt"
  stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
    echo "setup: Python references into $venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
fi
