#!/usr/bin/env bash
# One short, prepared check of the GPU path on a single NVIDIA GPU machine without network:
#   1. the fused CUDA kernels against their CPU versions (engine check-kernels);
#   2. the chip's own bf16 matmul rate and copy bandwidth, measured with PyTorch;
#   3. engine bench on a Llama-3.3-70B-shaped synthetic model (a few layers, bf16): prefill
#      TFLOP/s at 2048 and 4096 tokens, decode ms/token at batch 1 and 16, over a NCCL world of 1;
#   4. the same figures from a PyTorch reference on the same weights (below, ~50 lines);
#   5. `mpirun -n 2` on the one GPU: tp=2 over the MPI data plane (NCCL refuses two ranks on one GPU);
#   6. a table of every figure as a ratio to the chip's measured rates.
# Everything it prints also goes to one log file. Budget: under 6 minutes.
#
#   bash scripts/device-check.sh [--dry-run] [--bin dist/device/engine] [--layers 4] [--log FILE]
#
# The engine binary is built here (no GPU needed) by `make device-bundle`: release, `cuda`,
# stripped, under 60 MB. It runs against the CUDA 13 libraries of the machine's PyTorch install.
# --dry-run checks the inputs and prints what would run, without a GPU.
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="$here/dist/device/engine"
layers=4
dry_run=0
log=""
work="${TMPDIR:-/tmp}/shardlab-device-check"
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --bin) bin="$2"; shift ;;
    --layers) layers="$2"; shift ;;
    --log) log="$2"; shift ;;
    --work) work="$2"; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "device-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$work"
log="${log:-$work/device-check.log}"
exec > >(tee "$log") 2>&1
started=$SECONDS
max_binary_mb=60
problems=0

say() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - started))"; }
problem() { echo "device-check: $*"; problems=$((problems + 1)); }
# Runs (or, dry, prints) a command with a time limit.
step() {
  local limit="$1"; shift
  echo "+ $*"
  ((dry_run)) && return 0
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  ((rc == 124)) && echo "device-check: timed out after ${limit}s: $1"
  ((rc)) && problems=$((problems + 1))
  return "$rc"
}

say "inputs"
if [ -x "$bin" ]; then
  size_mb=$(($(stat -c %s "$bin") / 1048576))
  echo "engine binary: $bin (${size_mb} MB)"
  ((size_mb < max_binary_mb)) || problem "the engine binary is ${size_mb} MB, over ${max_binary_mb} MB"
  # Read the binary itself (no pipes: with pipefail, an early grep -q would fail the pipe).
  grep -aq "check-kernels" "$bin" || problem "$bin has no check-kernels command: an old build?"
  grep -aq "add_rms_norm_bf16" "$bin" || problem "$bin was not built with --features cuda (no fused PTX inside)"
else
  problem "no engine binary at $bin: run \`make device-bundle\` on the build machine and carry dist/device"
fi

# PyTorch's CUDA 13 libraries: cudart, cublas(Lt), curand, nvrtc, nccl.
python=$(command -v python3 || command -v python || true)
torch_libs=""
if [ -n "$python" ] && "$python" -c 'import torch' 2>/dev/null; then
  torch_libs=$("$python" - <<'PY'
import glob, os, torch
roots = {os.path.dirname(os.path.dirname(torch.__file__))}
dirs = [os.path.join(os.path.dirname(torch.__file__), "lib")]
for root in roots:
    dirs += sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib")))
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
  echo "torch $("$python" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
elif ((dry_run)); then
  echo "(no PyTorch here: on the GPU machine its nvidia/*/lib folders go on LD_LIBRARY_PATH)"
else
  problem "no python with torch: the CUDA libraries and the reference come from PyTorch"
fi
export LD_LIBRARY_PATH="${torch_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if [ -x "$bin" ] && ((!dry_run)); then
  missing=$(ldd "$bin" | grep "not found" || true)
  [ -z "$missing" ] || problem "libraries not found for the engine: $missing"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
elif ((!dry_run)); then
  problem "no nvidia-smi: is there a GPU?"
fi
command -v mpirun >/dev/null || echo "(no mpirun here: the two-rank step will be skipped)"
if ((problems)) && ((!dry_run)); then
  echo "device-check: $problems problem(s) with the inputs; stopping"
  exit 1
fi

# The PyTorch side: the chip's rates, and the reference model on the same weights.
reference="$work/torch_reference.py"
cat >"$reference" <<'PY'
"""Chip rates and a PyTorch Llama on the engine's synthetic weights: the same figures as engine bench."""
import glob, json, mmap, struct, sys, time, torch, torch.nn.functional as F
mode, out = sys.argv[1], sys.argv[-1]
dev, bf16 = "cuda", torch.bfloat16
def timed(fn, reps):
    fn(); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(reps): fn()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / reps
if mode == "chip":  # bf16 matmul rate and device copy bandwidth (read + write)
    a, b = (torch.randn(8192, 8192, device=dev, dtype=bf16) for _ in range(2))
    x = torch.empty(2 << 30, dtype=torch.uint8, device=dev); y = torch.empty_like(x)
    s_mm, s_cp = timed(lambda: a @ b, 50), timed(lambda: y.copy_(x), 20)
    json.dump({"matmul_tflops": 2 * 8192**3 / s_mm / 1e12, "copy_gb_s": 2 * x.numel() / s_cp / 1e9}, open(out, "w")); sys.exit()
model, prompts, batches, ctx, steps = sys.argv[2], [2048, 4096], [1, 16], 2048, 32
cfg = json.load(open(f"{model}/config.json"))
H, nh, nkv, L, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"], cfg["rms_norm_eps"]
hd, kinds = H // nh, {"BF16": bf16, "F16": torch.float16, "F32": torch.float32}
W = {}
for path in sorted(glob.glob(f"{model}/*.safetensors")):  # safetensors read by hand: no extra package
    f = open(path, "rb"); n = struct.unpack("<Q", f.read(8))[0]; header = json.loads(f.read(n)); buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    for name, t in header.items():
        if name == "__metadata__": continue
        lo, hi = t["data_offsets"]
        W[name] = torch.frombuffer(buf, dtype=kinds[t["dtype"]], count=(hi - lo) // kinds[t["dtype"]].itemsize, offset=8 + n + lo).view(t["shape"]).to(dev, bf16)
head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
inv = 1.0 / cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, device=dev).float() / hd)
def rope(x, pos):
    f = pos[:, None].float() * inv; c, s = f.cos().to(bf16), f.sin().to(bf16); x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)
def forward(ids, cache, start):
    B, T = ids.shape; pos = torch.arange(start, start + T, device=dev); x = W["model.embed_tokens.weight"][ids]
    for i in range(L):
        p = f"model.layers.{i}."; h = F.rms_norm(x, (H,), W[p + "input_layernorm.weight"], eps)
        q, k, v = ((h @ W[p + f"self_attn.{m}_proj.weight"].T).view(B, T, -1, hd).transpose(1, 2) for m in "qkv")
        K, V = cache[i]; K[:, :, start : start + T], V[:, :, start : start + T] = rope(k, pos), v
        a = F.scaled_dot_product_attention(rope(q, pos), K[:, :, : start + T], V[:, :, : start + T], is_causal=T > 1, enable_gqa=True)
        x = x + a.transpose(1, 2).reshape(B, T, H) @ W[p + "self_attn.o_proj.weight"].T
        h = F.rms_norm(x, (H,), W[p + "post_attention_layernorm.weight"], eps)
        x = x + (F.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    return F.rms_norm(x[:, -1], (H,), W["model.norm.weight"], eps) @ head.T
new_cache = lambda B, cap: [tuple(torch.zeros(B, nkv, cap, hd, device=dev, dtype=bf16) for _ in "kv") for _ in range(L)]
layer_params = L * (2 * H * H + 2 * H * nkv * hd + 3 * H * cfg["intermediate_size"]); head_params = head.numel()
report = {"prefill": [], "decode": []}
with torch.inference_mode():
    for P in prompts:
        ids = torch.randint(0, cfg["vocab_size"], (1, P), device=dev); s = timed(lambda: forward(ids, new_cache(1, P), 0), 3)
        flops = 2 * layer_params * P + L * 2 * H * P * P + 2 * head_params
        report["prefill"].append({"tokens": P, "ms": s * 1e3, "tflops_per_s": flops / s / 1e12})
    for B in batches:
        cache = new_cache(B, ctx + steps + 1); forward(torch.randint(0, 1000, (B, ctx), device=dev), cache, 0); torch.cuda.synchronize(); t = time.perf_counter()
        for i in range(steps): forward(torch.randint(0, 1000, (B, 1), device=dev), cache, ctx + i).argmax(-1).cpu()
        s = (time.perf_counter() - t) / steps; read = 2 * (layer_params + head_params) + B * 4 * L * nkv * hd * ctx
        report["decode"].append({"batch": B, "ms_per_step": s * 1e3, "gb_per_s": read / s / 1e9})
json.dump(report, open(out, "w"))
PY
if [ -n "$python" ]; then
  "$python" -m py_compile "$reference" && echo "reference script: $reference (compiles)" || problem "the reference script does not compile"
fi

model="$work/llama70b-${layers}l-bf16"
say "synthetic Llama-3.3-70B-shaped model, $layers layers, bf16"
if [ -e "$model/config.json" ]; then
  echo "reusing $model"
else
  step 150 "$bin" synth --preset llama-3.3-70b --layers "$layers" --dtype bf16 --out "$model"
fi

say "fused CUDA kernels against their CPU versions"
step 60 "$bin" check-kernels --device cuda --dtype f32,bf16

say "the chip: bf16 matmul rate and copy bandwidth (PyTorch)"
step 60 "$python" "$reference" chip "$work/chip.json" && ((!dry_run)) && cat "$work/chip.json" && echo

bench=(bench --model "$model" --dtype bf16 --device cuda --prompt-tokens 2048,4096
  --decode-batch 1,16 --decode-context 2048 --decode-steps 32)
say "engine bench, one rank, NCCL world of 1"
step 120 "$bin" "${bench[@]}" --data-plane nccl --json "$work/engine.json"

say "PyTorch reference on the same weights"
step 120 "$python" "$reference" model "$model" "$work/torch.json"

say "mpirun -n 2 on the one GPU: tp=2 over MPI"
if command -v mpirun >/dev/null || ((dry_run)); then
  root_flags=()
  [ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
  step 120 mpirun "${root_flags[@]}" --oversubscribe -n 2 -x LD_LIBRARY_PATH "$bin" bench --tp 2 \
    --model "$model" --dtype bf16 --device cuda --data-plane mpi --prompt-tokens 2048 \
    --decode-batch 1 --decode-context 512 --decode-steps 8 --json "$work/mpi.json"
else
  echo "skipped: no mpirun on this machine"
fi

say "summary"
if ((dry_run)); then
  echo "dry run: $problems problem(s) with the inputs"
  exit $((problems > 0))
fi
"$python" - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
load = lambda n: json.load(open(os.path.join(w, n))) if os.path.exists(os.path.join(w, n)) else None
chip, eng, ref, mpi = load("chip.json"), load("engine.json"), load("torch.json"), load("mpi.json")
if chip: print(f"chip: bf16 matmul {chip['matmul_tflops']:.0f} TFLOP/s, copy {chip['copy_gb_s']:.0f} GB/s")
for name, r in (("engine", eng), ("pytorch", ref), ("engine tp=2 mpi", mpi)):
    if not r: print(f"{name}: no figures"); continue
    for p in r["prefill"]:
        share = f" = {p['tflops_per_s'] / chip['matmul_tflops']:.2f} of the matmul rate" if chip else ""
        print(f"{name:>16} prefill {p['tokens']:>5} tokens: {p['ms']:8.1f} ms, {p['tflops_per_s']:6.1f} TFLOP/s{share}")
    for d in r["decode"]:
        share = f" = {d['gb_per_s'] / chip['copy_gb_s']:.2f} of the copy bandwidth" if chip else ""
        print(f"{name:>16} decode batch {d['batch']:>2}: {d['ms_per_step']:7.2f} ms/token, {d['gb_per_s']:6.0f} GB/s{share}")
if eng and ref:
    for e, t in zip(eng["prefill"], ref["prefill"]): print(f"engine / pytorch prefill {e['tokens']}: {t['ms'] / e['ms']:.2f}x the speed")
    for e, t in zip(eng["decode"], ref["decode"]): print(f"engine / pytorch decode batch {e['batch']}: {t['ms_per_step'] / e['ms_per_step']:.2f}x the speed")
PY
echo "device-check: $problems problem(s), $((SECONDS - started)) s; log: $log"
exit $((problems > 0))
