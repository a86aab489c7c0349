#!/usr/bin/env bash
# build-deb.sh: build the Debian packages (packaging/Packaging.cmake) and print their paths, one a
# line on stdout, loftq-studio first, then loftq-studio-cuda where the CUDA backend was built.
# Everything else (configure, build, cpack) goes to stderr.
#   packaging/build-deb.sh [-DVAR=VALUE ...]   configure build-deb/ (Release, no tests, no
#                                              benchmarks; extra -D options go to cmake), build, package
#   packaging/build-deb.sh --reuse DIR         package the tree DIR that is built already (e.g. build/
#                                              after packaging/setup-debian.sh: tests and benchmarks
#                                              have no install rules, so they stay out)
# Environment: BUILD_DIR (default build-deb), BUILD_TYPE (default Release), JOBS (default nproc).
# Needs the packages of packaging/setup-debian.sh (dpkg-shlibdeps from dpkg-dev, and file).
# Check the result with packaging/check-deb.sh $(packaging/build-deb.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2   # stdout: only the package paths

for tool in dpkg-shlibdeps file cpack; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool not found: run packaging/setup-debian.sh" >&2; exit 1; }
done

if [[ "${1:-}" == "--reuse" ]]; then
  BUILD_DIR=${2:?"usage: $0 --reuse BUILD_DIR"}
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || { echo "build-deb: $BUILD_DIR is not a configured build tree" >&2; exit 1; }
  shift 2
  (($# == 0)) || { echo "build-deb: --reuse takes no cmake options" >&2; exit 1; }
else
  BUILD_DIR=${BUILD_DIR:-build-deb}
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DBUILD_TESTING=OFF -DLOFTQ_BENCH=OFF "$@"
fi
# Up to date after setup-debian.sh (then a no-op); it also writes CPackConfig.cmake into a tree
# configured before packaging/Packaging.cmake existed.
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}"

out="$BUILD_DIR/package"
rm -rf "$out"
cpack --config "$BUILD_DIR/CPackConfig.cmake" -G DEB -B "$out"

main=$(ls "$out"/loftq-studio_*.deb 2>/dev/null || true)
[[ -n "$main" && -f "$main" ]] || { echo "build-deb: cpack wrote no loftq-studio_*.deb into $out" >&2; exit 1; }
echo "build-deb: wrote" "$out"/*.deb
realpath "$main" >&3
for deb in "$out"/loftq-studio-*_*.deb; do
  if [[ -f "$deb" ]]; then realpath "$deb" >&3; fi
done
exit 0
