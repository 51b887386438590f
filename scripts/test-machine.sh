#!/usr/bin/env bash
# What the test suite needs from the operating system, installed when missing.
# `pnpm test` runs this first, so the README's test command passes on a fresh
# Debian/Ubuntu machine; .ci/run calls `pnpm test` and nothing else installs.
#   chromium     the dashboard's browser test (playwright-core drives it), and
#                SwiftShader's Vulkan driver, which runs WebGPU (WGSL) on the CPU
#   libvulkan1   the Vulkan loader Dawn opens to reach SwiftShader
#   tcpdump      the CURVE test records loopback traffic to prove it is encrypted
#   slurm-wlm, munge  deploy/test/slurm.test.ts stands up a one-host Slurm cluster
#   iproute2     deploy/test/netns.test.ts builds hosts from network namespaces
#   python3-numpy  packages/models/test/reference/peft_merge.py, PEFT's LoRA math as an
#                independent reference (run with Debian's /usr/bin/python3)
#   python3-torch  packages/models/test/reference/preference_torch.py: the preference
#                objectives' losses and gradients by PyTorch's autograd (STACK.md: 1.13)
#   util-linux   unshare: the disk-full test mounts a tmpfs in a mount namespace of its own
#   gcc, libvulkan-dev  build core's Vulkan device-select layer (identical GPUs), which
#                apps/coordinator/test/identical-gpus.test.ts runs
#   python3-venv  scripts/reference-python.sh, run last: torch, transformers, peft, trl
#                and tensorboard in .venv-reference/ (test/transformers-parity.test.ts)
# Each line: the Debian package, then the file whose presence means it is installed.
set -euo pipefail
needs=(
  "chromium /usr/bin/chromium"
  "libvulkan1 /usr/lib/x86_64-linux-gnu/libvulkan.so.1|/usr/lib/aarch64-linux-gnu/libvulkan.so.1"
  "tcpdump /usr/bin/tcpdump|/usr/sbin/tcpdump"
  "slurm-wlm /usr/sbin/slurmctld"
  "munge /usr/sbin/munged"
  "iproute2 /usr/sbin/ip|/usr/bin/ip|/sbin/ip"
  "python3-numpy /usr/lib/python3/dist-packages/numpy/__init__.py"
  "python3-torch /usr/lib/python3/dist-packages/torch/__init__.py"
  "util-linux /usr/bin/unshare"
  "gcc /usr/bin/cc|/usr/bin/gcc"
  "libvulkan-dev /usr/include/vulkan/vk_layer.h"
)
missing=()
for line in "${needs[@]}"; do
  pkg=${line%% *}
  found=0
  IFS='|' read -ra paths <<<"${line#* }"
  for p in "${paths[@]}"; do [[ -e $p ]] && found=1; done
  ((found)) || missing+=("$pkg")
done
# scripts/reference-python.sh makes its environment with venv and ensurepip.
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

install_missing() {
  if [[ ${LORAFLEET_NO_APT:-} == 1 ]]; then
    echo "test-machine: missing ${missing[*]}; LORAFLEET_NO_APT=1, so not installing (the tests that need them will fail and say so)" >&2
    return 0
  fi
  local sudo=
  if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=sudo
    else
      echo "test-machine: the tests need these Debian packages: ${missing[*]}" >&2
      echo "  install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "test-machine: the tests need ${missing[*]} (Debian package names) and this machine has no apt-get; install their equivalents" >&2
    exit 1
  fi
  echo "test-machine: installing ${missing[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
((${#missing[@]} == 0)) || install_missing

# Then the Python reference stack (torch, transformers, peft, trl, tensorboard) in a virtual
# environment of its own, once: scripts/reference-python.sh.
bash "$(dirname "$0")/reference-python.sh" >/dev/null
