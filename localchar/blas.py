"""MLX's Linux CPU wheel ships the reference BLAS. Debian's OpenBLAS serves the same symbols about
6x faster for our matmuls (bench/blas.py measures it), so on Linux localchar re-executes itself
with OpenBLAS preloaded, before MLX is imported. LOCALCHAR_NO_OPENBLAS=1 turns this off."""

from __future__ import annotations

import os
import platform
import sys

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"


def maybe_reexec(argv: list[str]) -> None:
    if (platform.system() == "Linux" and os.path.exists(OPENBLAS) and "mlx" not in sys.modules
            and OPENBLAS not in os.environ.get("LD_PRELOAD", "") and not os.environ.get("LOCALCHAR_NO_OPENBLAS")):
        env = dict(os.environ, LD_PRELOAD=":".join(p for p in (OPENBLAS, os.environ.get("LD_PRELOAD")) if p))
        os.execve(argv[0], argv, env)
