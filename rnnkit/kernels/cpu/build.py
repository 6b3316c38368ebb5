"""Compile the fused C++ kernels once per machine and load them.

Every ``.cpp`` and ``.h`` next to this file is compiled with
``torch.utils.cpp_extension.load`` into a cache directory keyed by a hash of the sources,
the torch version and the CPU's instruction-set flags (the build uses ``-march=native``),
so each machine builds once and every later process (pytest workers, torchrun ranks) only
loads the shared library. A file lock serialises concurrent first builds. A new family's
source is picked up by being there: nothing lists the files.

Environment: ``RNNKIT_CACHE`` moves the build cache (default ``~/.cache/rnnkit``).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import os
import pathlib
import platform

import torch

__all__ = ["build_directory", "load_library", "sources"]

_HERE = pathlib.Path(__file__).resolve().parent
# -fopenmp: at::parallel_for is inlined from ATen's headers and runs its loop on torch's
# OpenMP threads only when the including code is compiled with OpenMP (without it, it
# runs the whole range on the calling thread). The library then links libgomp.so.1, the
# one torch already loaded.
# -fno-trapping-math: without it GCC keeps the clamps of exp_fast (fastmath.h) as branches
# and leaves every gate loop scalar ("control flow in loop").
_CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
_LDFLAGS = ("-fopenmp",)


def sources() -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """(the .cpp files, the .h files) of the library, sorted by name."""
    return sorted(_HERE.glob("*.cpp")), sorted(_HERE.glob("*.h"))


def _cpu_flags() -> str:
    """The instruction-set flags of this CPU (part of the cache key: -march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_directory() -> pathlib.Path:
    """Cache directory of the build for these sources, this torch and this CPU."""
    digest = hashlib.sha256()
    cpp, headers = sources()
    for path in cpp + headers:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for part in (torch.__version__, platform.python_version(), _cpu_flags(), *_CFLAGS,
                 *_LDFLAGS):
        digest.update(part.encode())
    root = pathlib.Path(os.environ.get("RNNKIT_CACHE")
                        or pathlib.Path.home() / ".cache" / "rnnkit")
    return root / f"cpu-{digest.hexdigest()[:16]}"


@functools.lru_cache(maxsize=None)
def load_library():
    """Build (once per machine) and load the library: registers the ``torch.ops.rnnkit``
    ops and returns ``(path, python_module)``, the module holding the plain entry points
    ``forward``, ``backward`` and ``step`` (None if it would not import)."""
    from torch.utils import cpp_extension

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / "rnnkit_cpu.so"
    done = directory / "built"
    # not named "lock": cpp_extension keeps its own baton file of that name in the directory
    with open(directory.with_suffix(".build-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then just load
        if not done.exists():
            cpp_extension.load(
                name="rnnkit_cpu", sources=[str(s) for s in sources()[0]],
                extra_cflags=list(_CFLAGS), extra_ldflags=list(_LDFLAGS),
                build_directory=str(directory), is_python_module=False, verbose=False)
            done.touch()
    torch.ops.load_library(str(library))
    return library, _python_module(library)


def _python_module(library):
    """The same shared library imported as a Python module (its pybind11 entry points)."""
    try:
        spec = importlib.util.spec_from_file_location("rnnkit_cpu", library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except Exception:  # pragma: no cover - then every call goes through the ops
        return None
