#!/usr/bin/env bash
# The Python reference stack that the parity tests compare the project with:
# PyTorch, Hugging Face transformers, PEFT and TRL (and TensorBoard, which
# reads the event files) at the versions pinned
# below, in a virtual environment of their own (.venv-reference/, ignored by
# git). `pnpm test` runs this (through scripts/test-machine.sh); it does
# nothing when the environment already holds these versions, and prints the
# environment's python on success.
#   LORAFLEET_REFERENCE_VENV   another folder for the environment
#   LORAFLEET_NO_PIP=1         install nothing (the parity tests then fail and say why)
# pip uses this machine's own configuration (its index, a local wheel mirror);
# for the CPU-only torch wheel instead of the CUDA one, point PIP_EXTRA_INDEX_URL
# at PyTorch's CPU wheel index first.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LORAFLEET_REFERENCE_VENV:-$PWD/.venv-reference}
pins=(torch==2.13.0 transformers==5.18.0 peft==0.21.0 trl==1.13.0 tensorboard==2.21.0)
stamp=$venv/lorafleet-pins.txt

if [[ -f $stamp && "$(cat "$stamp")" == "${pins[*]}" && -x $venv/bin/python ]]; then
  echo "$venv/bin/python"
  exit 0
fi
if [[ ${LORAFLEET_NO_PIP:-} == 1 ]]; then
  echo "reference-python: $venv lacks ${pins[*]}; LORAFLEET_NO_PIP=1, so not installing" >&2
  exit 0
fi
python=${LORAFLEET_REFERENCE_BASE_PYTHON:-python3}
if ! "$python" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "reference-python: the parity tests need Python 3.10+ with venv and ensurepip ($python):" >&2
  echo "  on Debian/Ubuntu: apt-get install python3-venv; or set LORAFLEET_REFERENCE_BASE_PYTHON" >&2
  exit 1
fi
echo "reference-python: installing ${pins[*]} into $venv (once; a few minutes)" >&2
started=$SECONDS
"$python" -m venv --clear "$venv"
# One retry: an index that is not reachable (a machine with a local mirror only) costs little.
if ! "$venv/bin/pip" install --disable-pip-version-check --retries 1 "${pins[@]}" >"$venv/pip.log" 2>&1; then
  tail -n 30 "$venv/pip.log" >&2
  echo "reference-python: pip could not install ${pins[*]} (the whole log: $venv/pip.log)" >&2
  exit 1
fi
echo "${pins[*]}" > "$stamp"
echo "reference-python: ready in $((SECONDS - started)) s" >&2
echo "$venv/bin/python"
