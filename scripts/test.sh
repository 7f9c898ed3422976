#!/usr/bin/env bash
# The test command (README): installs everything the tests need, then runs them all.
# Idempotent; safe to run again.  Extra arguments go to pytest (e.g. -k cheader).
set -euo pipefail
cd "$(dirname "$0")/.."

# External tools the tests use as independent readers of our outputs.
need=()
command -v octave >/dev/null || need+=(octave)
command -v h5dump >/dev/null || need+=(hdf5-tools)
command -v iverilog >/dev/null || need+=(iverilog)
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi)
[ -f /usr/lib/arm-none-eabi/include/stdint.h ] || need+=(libnewlib-arm-none-eabi)
command -v xxd >/dev/null || need+=(xxd)
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# torch is pinned to the local CPU wheel by constraints.txt (never a CUDA build).
python -m pip install -q -c constraints.txt -e '.[test]'
export CI="${CI:-1}"  # under CI a missing tool fails a test instead of skipping it
python -m pytest -n 2 "$@"
