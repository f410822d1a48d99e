#!/usr/bin/env bash
# Set up localchar in ./.venv (idempotent). On Linux it also installs Debian's OpenBLAS when it
# can: MLX's CPU wheel ships the slow reference BLAS, and localchar preloads OpenBLAS instead.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# sentence-transformers needs torch; pin the release whose CPU build these Linux machines carry
# locally (a bare `torch` resolves to a multi-GB CUDA build).
[ "$(uname -s)" = Linux ] && .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
if [ "$(uname -s)" = Linux ] && [ ! -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] \
   && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi
  if [ "$SUDO" != skip ]; then
    $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1; } \
      || echo "setup: could not install libopenblas0-pthread; MLX on the CPU will be slower" >&2
  fi
fi
