#!/usr/bin/env bash
# check-deb.sh: check the Debian packages that packaging/build-deb.sh wrote, without installing them
# on the system: unpacks them (dpkg -x) into a scratch root and runs the programs from there.
#   packaging/check-deb.sh loftq-studio_V_ARCH.deb [loftq-studio-cuda_V_ARCH.deb]
#   packaging/check-deb.sh $(packaging/build-deb.sh)
# Checks: the control fields (Depends lists Qt 6, QCustomPlot, OpenBLAS, LAPACKE, sentencepiece,
# xxhash; the CUDA package depends on loftq-studio of its version); the files; no RUNPATH into a
# build tree; every library the programs need resolves here; `loftq --version` and a CPU dry run
# on the shipped demo model; `loftq-studio --demo --plan ... --screenshot` (offscreen) writes a PNG
# while the source tree's copies of the demo model and docs (the programs' fallback) are hidden,
# so the shipped ones are the ones found, relative to the program; with the CUDA package and a
# usable GPU (nvidia-smi), a dry run with --device cuda through the packaged plugin.
# Exits non-zero on the first failure. LOFTQ_CHECK_SCREENSHOT=FILE keeps the screenshot.
set -euo pipefail

fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok: $*"; }

(($# >= 1 && $# <= 2)) || { sed -n '2,5p' "$0" >&2; exit 2; }
main_deb="" cuda_deb=""
for deb in "$@"; do
  [[ -f "$deb" ]] || fail "$deb: no such file"
  case "$(dpkg-deb -f "$deb" Package)" in
    loftq-studio) main_deb=$deb ;;
    loftq-studio-cuda) cuda_deb=$deb ;;
    *) fail "$deb: not a loftq-studio package" ;;
  esac
done
[[ -n "$main_deb" ]] || fail "no loftq-studio package among $*"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/check-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root

# ---- control fields ----
dpkg-deb -I "$main_deb"
version=$(dpkg-deb -f "$main_deb" Version)
depends=$(dpkg-deb -f "$main_deb" Depends)
[[ -n "$depends" ]] || fail "$main_deb declares no Depends"
has_studio=0
if dpkg-deb -c "$main_deb" | grep '\./usr/bin/loftq-studio$' >/dev/null; then has_studio=1; fi   # no -q: SIGPIPE
want=(libc6 libstdc++6 'libopenblas0' 'liblapacke' 'libsentencepiece0' 'libxxhash0')
((has_studio)) && want+=(libqt6core6 libqt6gui6 libqt6widgets6 libqt6svg6 'libqcustomplot2.1-qt6')
for p in "${want[@]}"; do
  [[ ", $depends" == *", $p"* || "$depends" == *"| $p"* ]] || fail "Depends lacks $p: $depends"
done
ok "loftq-studio $version Depends: $depends"
if [[ -n "$cuda_deb" ]]; then
  dpkg-deb -I "$cuda_deb"
  [[ "$(dpkg-deb -f "$cuda_deb" Version)" == "$version" ]] || fail "$cuda_deb is not version $version"
  [[ "$(dpkg-deb -f "$cuda_deb" Depends)" == *"loftq-studio (= $version)"* ]] || fail "$cuda_deb does not depend on loftq-studio (= $version)"
  ok "loftq-studio-cuda Depends: $(dpkg-deb -f "$cuda_deb" Depends)"
fi

# ---- files ----
for deb in "$@"; do dpkg -x "$deb" "$root"; done
files=(usr/bin/loftq usr/share/doc/loftq-studio/README.md)
((has_studio)) && files+=(usr/bin/loftq-studio usr/share/applications/loftq-studio.desktop
  usr/share/icons/hicolor/scalable/apps/loftq-studio.svg usr/share/loftq-studio/plans/stories260k-auto.loftq.json
  usr/share/loftq-studio/models/stories260K/stories260K.bin usr/share/loftq-studio/models/stories260K/tok512.bin
  usr/share/loftq-studio/models/stories260K/LICENSE usr/share/doc/loftq-studio/MIXED-PRECISION.md)
[[ -n "$cuda_deb" ]] && files+=(usr/lib/loftq/libloftq_cuda.so)
for f in "${files[@]}"; do [[ -s "$root/$f" ]] || fail "$f missing or empty"; done
ok "${#files[@]} expected files present"

# ---- the programs' libraries: no RUNPATH into a build tree, all resolvable here ----
elves=("$root"/usr/bin/*)
[[ -n "$cuda_deb" ]] && elves+=("$root/usr/lib/loftq/libloftq_cuda.so")
for e in "${elves[@]}"; do
  rp=$(readelf -d "$e" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
  if [[ "$e" == *libloftq_cuda.so ]]; then
    echo "check-deb: usr/lib/loftq/libloftq_cuda.so RUNPATH: ${rp:-(none)} (the CUDA toolkit's libraries)"
  else
    [[ -z "$rp" ]] || fail "${e#"$root"/} has a RUNPATH: $rp"
  fi
done
for e in "$root"/usr/bin/*; do
  missing=$(ldd "$e" | grep 'not found' || true)
  [[ -z "$missing" ]] || fail "${e#"$root"/}: libraries not found: $missing"
done
ok "the programs have no RUNPATH and their libraries resolve"

# ---- loftq ----
demo=$root/usr/share/loftq-studio/models/stories260K
[[ "$("$root/usr/bin/loftq" --version)" == "loftq $version" ]] || fail "loftq --version: $("$root/usr/bin/loftq" --version 2>&1)"
ok "$("$root/usr/bin/loftq" --version)"
if [[ -f "$demo/stories260K.bin" ]]; then
  log=$("$root/usr/bin/loftq" quantize "$demo/stories260K.bin" --dry-run --device cpu --threads 2 2>&1) ||
    fail "loftq quantize --dry-run --device cpu: $log"
  ok "loftq dry run on the CPU: $(grep ' weights in ' <<<"$log")"
  if [[ -n "$cuda_deb" ]]; then
    if nvidia-smi -L >/dev/null 2>&1; then
      log=$("$root/usr/bin/loftq" quantize "$demo/stories260K.bin" --dry-run --device cuda 2>&1) ||
        fail "loftq quantize --dry-run --device cuda (the packaged plugin): $log"
      grep -q ' on cuda' <<<"$log" || fail "the dry run did not run on cuda: $log"
      ok "loftq dry run through the packaged CUDA plugin: $(grep ' weights in ' <<<"$log")"
    else
      echo "check-deb: note: no usable GPU (nvidia-smi): the packaged CUDA plugin is not exercised"
    fi
  fi
fi

# ---- loftq-studio ----
if ((has_studio)); then
  studio=$root/usr/bin/loftq-studio
  # Where the program looks for its data, relative to itself (app/CMakeLists.txt, LOFTQ_*_REL):
  # those must hold the shipped files.
  model_rel=$(strings -a "$studio" | grep -o -m1 '[./]*share/loftq-studio/models/stories260K' | sed 's|^/||' || true)
  docs_rel=$(strings -a "$studio" | grep -o -m1 '[./]*share/doc/loftq-studio' | sed 's|^/||' || true)
  [[ -n "$model_rel" && -f "$root/usr/bin/$model_rel/stories260K.bin" ]] || fail "the demo model is not where loftq-studio looks (bin/${model_rel:-?})"
  [[ -n "$docs_rel" && -f "$root/usr/bin/$docs_rel/MIXED-PRECISION.md" ]] || fail "the docs are not where loftq-studio looks (bin/${docs_rel:-?})"
  ok "the demo model and docs are where loftq-studio looks: bin/$model_rel, bin/$docs_rel"

  # The program falls back to the source tree it was built from: hide that tree's copies in a
  # private mount namespace, so that the run proves the packaged ones are found.
  hide=()
  src_model=$(strings -a -el "$studio" | grep -m1 -x '/.*/resources/models/stories260K' || true)   # QStringLiteral: UTF-16
  if [[ -n "$src_model" ]]; then
    for d in "$src_model" "${src_model%/resources/models/stories260K}/docs"; do [[ -d "$d" ]] && hide+=("$d"); done
  fi
  run=()
  if ((${#hide[@]})); then
    ns=(unshare --mount)
    [[ $(id -u) -eq 0 ]] || ns+=(--map-root-user)
    if "${ns[@]}" true 2>/dev/null; then
      # shellcheck disable=SC2016
      run=("${ns[@]}" -- sh -c 'while [ "$1" != -- ]; do mount -t tmpfs -o ro,size=4k none "$1" || exit 97; shift; done; shift; exec "$@"' sh "${hide[@]}" --)
      echo "check-deb: hiding the source tree's ${hide[*]} from loftq-studio"
    else
      echo "check-deb: note: no mount namespace here (unshare): the source tree's demo model stays visible to loftq-studio"
    fi
  fi
  shot=$scratch/shot.png
  mkdir -p "$scratch/xdg/cache" "$scratch/xdg/config" "$scratch/xdg/data" "$scratch/xdg/runtime"
  chmod 700 "$scratch/xdg/runtime"
  set +e
  out=$(env QT_QPA_PLATFORM=offscreen XDG_CACHE_HOME="$scratch/xdg/cache" XDG_CONFIG_HOME="$scratch/xdg/config" \
    XDG_DATA_HOME="$scratch/xdg/data" XDG_RUNTIME_DIR="$scratch/xdg/runtime" \
    timeout 300 "${run[@]}" "$studio" --demo --plan "$root/usr/share/loftq-studio/plans/stories260k-auto.loftq.json" \
    --threads 2 --screenshot "$shot" 2>&1)
  rc=$?
  set -e
  ((rc == 0)) || fail "loftq-studio --demo --screenshot exited $rc: $out"
  [[ -s "$shot" ]] || fail "loftq-studio wrote no screenshot: $out"
  [[ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] || fail "$shot is not a PNG"
  ok "loftq-studio --demo --plan --screenshot (offscreen): $(stat -c %s "$shot") bytes of PNG"
  if [[ -n "${LOFTQ_CHECK_SCREENSHOT:-}" ]]; then cp "$shot" "$LOFTQ_CHECK_SCREENSHOT"; fi
fi
echo "check-deb: all checks passed ($*)"
