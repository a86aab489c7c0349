#!/usr/bin/env bash
# setup-debian.sh: install every Debian 12 package LoftQ Studio needs to build and test (apt only),
# then configure and build into build/ (binaries in build/bin/).
#   packaging/setup-debian.sh            install (with sudo when not root) + build
#   packaging/setup-debian.sh --no-install   build only
# Environment: BUILD_DIR (default build), BUILD_TYPE (default Release), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  qt6-base-dev qt6-svg-dev libqcustomplot-dev        # Qt 6 (Core, Widgets, Test, PrintSupport), plots
  libopenblas-dev liblapacke-dev                     # BLAS (OpenBLAS pthreads) and LAPACKE
  nlohmann-json3-dev libcli11-dev libxxhash-dev      # JSON, command line, checksums
  libre2-dev                                         # regexes in linear time (plan rules)
  libsentencepiece-dev libbenchmark-dev              # tokenizers (fine-tuning), benchmarks
  fonts-dejavu-core                                  # legible offscreen rendering
  dpkg-dev file                                      # the .deb (build-deb.sh): dpkg-shlibdeps, ELF detection
  clang-14 libclang-rt-14-dev llvm-14                # the sanitizer + fuzz build (.ci/sanitize): ASan, UBSan, libFuzzer
  libopenmpi-dev openmpi-bin                         # runs spread over processes and hosts (mpirun -np N loftq ...)
  openssh-server openssh-client                      # the Run-on launcher's ssh (tests start their own localhost sshd)
)

if [[ "${1:-}" != "--no-install" ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup-debian: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "setup-debian: all packages present"
  fi
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}"
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"
echo "setup-debian: built $BUILD_DIR/bin/loftq"
