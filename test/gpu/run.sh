#!/usr/bin/env bash
# The GPU check in one call (../shared/gpu/GPU.md): WebGPU conformance, logits
# parity with Hugging Face transformers, a project-written PEFT adapter loaded
# by peft, gradients on webgpu vs wasm, and LoRA training throughput + peak GPU
# memory on webgpu vs PyTorch + PEFT in the same run. Everything lands in OUT:
# work/ (every phase's JSON, phases.jsonl, nvidia-smi samples) and
# gpu-report.json; the summary (and a RATIO line) goes to stdout. It also runs
# the WGSL kernels' tile sweep and benchmark (test/bench/webgpu-kernels/), and
# the throughput again on tfjs's stock kernels (LORAFLEET_WEBGPU_KERNELS=stock), and
# one step under tf.profile (GPU time per kernel: profile.json).
#
# On the GPU machine, after `pnpm build && bash scripts/gpu-pack.sh` here:
#   bash .gpu/run.sh bash test/gpu/run.sh "$OUT" 2>&1 | tee "$OUT/log"
# Here, without a GPU (wasm, tiny shapes, no Python; test/gpu-check.test.ts):
#   bash test/gpu/run.sh --smoke OUTDIR
# GPU_SMOKE_WEBGPU=1 adds the webgpu phases to the smoke run (conformance,
# logits and gradients on webgpu), on SwiftShader where there is no GPU:
#   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json GPU_SMOKE_WEBGPU=1 \
#     bash test/gpu/run.sh --smoke OUTDIR
# GPU_CHECK_SECONDS (default 480) bounds the whole script: each phase gets
# what is left of it, and the report always runs.
set -uo pipefail
smoke=0
if [[ ${1:-} == --smoke ]]; then
  smoke=1
  shift
fi
out=${1:-${OUT:-}}
[[ -n $out ]] || { echo "usage: run.sh [--smoke] OUTDIR (or set OUT)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
work=$out/work
mkdir -p "$work"
: > "$work/phases.jsonl"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false NO_COLOR=1
started=$(date +%s)
deadline=$((started + ${GPU_CHECK_SECONDS:-480}))
gpu=test/gpu/gpu.mjs
ref=test/gpu/reference.py

# phase NAME LIMIT COMMAND...: runs it under min(LIMIT, time left), logs and records its exit.
phase() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - $(date +%s) - 20))
  [[ $name == report ]] && left=30
  if ((left < 5)); then
    echo "=== phase $name: skipped (out of time)"
    printf '{"phase":"%s","rc":-1,"seconds":0,"skipped":true}\n' "$name" >> "$work/phases.jsonl"
    return 0
  fi
  ((limit > left)) && limit=$left
  echo "=== phase $name (limit ${limit}s): $*"
  local t0 rc t1
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@"
  rc=$?
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  echo "=== phase $name: exit $rc after ${secs}s"
  printf '{"phase":"%s","rc":%d,"seconds":%s}\n' "$name" "$rc" "$secs" >> "$work/phases.jsonl"
  return 0
}

# nvidia-smi memory.used (MiB) of GPU 0: one idle sample, then every 100 ms.
smi_pid=
smi_start() {
  command -v nvidia-smi > /dev/null || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 > "$1"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >> "$1" &
  smi_pid=$!
}
smi_stop() {
  [[ -n $smi_pid ]] || return 0
  kill "$smi_pid" 2> /dev/null
  wait "$smi_pid" 2> /dev/null
  smi_pid=
}
trap smi_stop EXIT

# The pieces, each called below in the order of its mode.
correctness() {
  phase train-adapter 90 node "$gpu" train-adapter --model "$work/tiny" --out "$work/adapter"
  # A DoRA adapter (use_dora) too: peft computes it from the same files below.
  phase train-adapter-dora 90 node "$gpu" train-adapter --model "$work/tiny" --out "$work/adapter-dora" --dora
  local dora=()
  [[ -f $work/adapter-dora/run/adapter/adapter_model.safetensors ]] &&
    dora=(--dora-adapter "$work/adapter-dora/run/adapter")
  for b in "${logits_backends[@]}"; do
    phase "logits-$b" 60 node "$gpu" logits --model "$work/tiny" --ids "$work/tiny/ids.json" \
      --adapter "$work/adapter/run/adapter" "${dora[@]}" --backend "$b" --out "$work/logits-$b"
  done
  ((smoke)) || phase check 90 python3 "$ref" check --work "$work"
  # The Llama family (every type in families.json) against transformers and peft themselves.
  if ((smoke)); then
    phase family-models 60 node "$gpu" family-models --dir "$work/families"
  else
    phase make-families 90 python3 "$ref" make-families --dir "$work/families"
  fi
  # An adapter of each from lorafleet train (wasm) and its merged folder, which peft and transformers load.
  phase family-adapters 180 node "$gpu" family-adapters --dir "$work/families"
  for b in "${logits_backends[@]}"; do
    phase "family-logits-$b" 90 node "$gpu" family-logits --dir "$work/families" --backend "$b"
  done
  ((smoke)) || phase check-families 90 python3 "$ref" check-families --dir "$work/families"
  phase grads 60 node "$gpu" grads --model "$work/tiny" --ids "$work/tiny/ids.json" \
    --backend "$grads_backend" --out "$work/grads.json"
}

if ((smoke)); then
  echo "GPU check, smoke run: wasm, tiny shapes, no Python"
  phase adapters 60 node "$gpu" adapters --out "$work/adapters.json"
  phase device-layer 30 node "$gpu" device-layer --out "$work/device-layer.json"
  phase tiny-model 60 node "$gpu" tiny-model --dir "$work/tiny"
  if command -v python3 > /dev/null; then
    phase py-compile 30 python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])" "$ref"
  fi
  logits_backends=(wasm)
  grads_backend=cpu
  if [[ ${GPU_SMOKE_WEBGPU:-} == 1 ]]; then
    phase conformance 600 env LORAFLEET_BACKENDS=webgpu node node_modules/vitest/vitest.mjs run \
      packages/core/test/lora-conformance.test.ts test/backend-conformance.test.ts
    logits_backends=(webgpu wasm)
    grads_backend=webgpu
  fi
  correctness
  phase throughput-project 60 node "$gpu" throughput --smoke --backend wasm --out "$work/throughput-project.json"
  phase profile 60 env LORAFLEET_WEBGPU_STEP=tape node "$gpu" profile --smoke --backend "$grads_backend" \
    --out "$work/profile.json"
  if [[ ${GPU_SMOKE_WEBGPU:-} == 1 ]]; then
    phase profile-scheduled 60 node "$gpu" profile --smoke --backend webgpu --out "$work/profile-scheduled.json"
  fi
else
  # Measurements first (device minutes are scarce: what matters most comes
  # back even if the time runs out), correctness after.
  phase env 20 bash -c 'nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv; echo "node $(node --version)"; ls /usr/local/nvidia/share/vulkan/icd.d 2> /dev/null || true'
  phase adapters 60 node "$gpu" adapters --out "$work/adapters.json"
  phase device-layer 30 node "$gpu" device-layer --out "$work/device-layer.json"
  # The project's WGSL kernels (docs/webgpu-kernels.md): the tile sweep writes
  # the tile table; the kernel benchmark and the project's throughput use it.
  phase tile-sweep 220 node test/bench/webgpu-kernels/tile-sweep.mjs --out "$work/tile-table.json"
  tiles=()
  [[ -s $work/tile-table.json ]] && tiles=(env "LORAFLEET_WEBGPU_TILES=$work/tile-table.json")
  phase kernel-bench 75 "${tiles[@]}" node test/bench/webgpu-kernels/run.mjs --out "$work/kernel-bench.json"
  # Throughput without nvidia-smi beside it: its 100 ms polling slowed the
  # project's dispatch-bound step from ~0.16 s to ~0.24 s on the H200 (torch's
  # did not move); peak memory comes from a short run of its own.
  # The project's step is the hand-scheduled one where it runs (LORAFLEET_WEBGPU_STEP=auto),
  # then tfjs's tape for comparison (the step before the hand-scheduled one).
  phase throughput-project 120 "${tiles[@]}" node "$gpu" throughput --backend webgpu --out "$work/throughput-project.json"
  phase throughput-project-tape 90 "${tiles[@]}" env LORAFLEET_WEBGPU_STEP=tape node "$gpu" throughput \
    --backend webgpu --out "$work/throughput-project-tape.json"
  smi_start "$work/smi-project.csv"
  phase memory-project 60 "${tiles[@]}" node "$gpu" throughput --backend webgpu --warmup 1 --steps 2 \
    --out "$work/memory-project.json"
  smi_stop
  smi_start "$work/smi-project-tape.csv"
  phase memory-project-tape 60 "${tiles[@]}" env LORAFLEET_WEBGPU_STEP=tape node "$gpu" throughput \
    --backend webgpu --warmup 1 --steps 2 --out "$work/memory-project-tape.json"
  smi_stop
  smi_start "$work/smi-torch.csv"
  phase throughput-torch 90 python3 "$ref" throughput --out "$work/throughput-torch.json"
  smi_stop
  # Timestamps unquantized (Dawn rounds them to 2^16 ns by default).
  phase profile 90 "${tiles[@]}" env LORAFLEET_DAWN_FLAGS=disable-dawn-features=timestamp_quantization \
    LORAFLEET_WEBGPU_STEP=tape node "$gpu" profile --backend webgpu --out "$work/profile.json"
  phase profile-scheduled 60 "${tiles[@]}" env LORAFLEET_DAWN_FLAGS=disable-dawn-features=timestamp_quantization \
    node "$gpu" profile --backend webgpu --out "$work/profile-scheduled.json"
  # Dawn's robustness off (it clamps every storage and workgroup array index;
  # the project's kernels check their own bounds): what the clamps cost the
  # step and the matmul. Information for choosing a default, not the default.
  robust_off=(env LORAFLEET_DAWN_FLAGS=enable-dawn-features=disable_robustness)
  phase throughput-project-norobust 60 "${tiles[@]}" "${robust_off[@]}" node "$gpu" throughput \
    --backend webgpu --out "$work/throughput-project-norobust.json"
  phase kernel-bench-norobust 75 "${tiles[@]}" "${robust_off[@]}" node test/bench/webgpu-kernels/run.mjs \
    --out "$work/kernel-bench-norobust.json"
  # The host's cost of issuing the step (Dawn's null adapter on this machine's CPU).
  phase host 60 node test/bench/webgpu-kernels/host.mjs
  phase conformance 150 env LORAFLEET_BACKENDS=webgpu node node_modules/vitest/vitest.mjs run \
    packages/core/test/lora-conformance.test.ts test/backend-conformance.test.ts \
    packages/core/test/backends.test.ts test/webgpu-kernels.test.ts packages/core/test/webgpu-*.test.ts \
    packages/core/test/grad-accumulator.test.ts test/scheduled-step/
  phase make-tiny 90 python3 "$ref" make-tiny --dir "$work/tiny"
  logits_backends=(webgpu wasm)
  grads_backend=webgpu
  correctness
  # Two workers on this GPU through the real worker path (equal to wasm on
  # SwiftShader: apps/coordinator/test/cli-webgpu.test.ts).
  phase fleet-webgpu 60 node apps/coordinator/bin/lorafleet.js train --model "$work/tiny" \
    --data "$work/adapter/train.txt" --out "$work/fleet" --steps 3 --batch-size 4 --seq-len 32 \
    --workers 2 --backend webgpu --no-dashboard
  # The RATIO's "before" (measured on 2026-12-04: 3,235-3,553 tokens/s), last:
  # the same throughput on tfjs's stock matmul, unfused LoRA.
  phase throughput-project-stock 90 env LORAFLEET_WEBGPU_KERNELS=stock node "$gpu" throughput \
    --backend webgpu --out "$work/throughput-project-stock.json"
fi

phase report 30 node "$gpu" report --work "$work" --out "$out/gpu-report.json"
echo "GPU check done in $(($(date +%s) - started))s; results in $out"
