"""What a run computed on: Python, the numeric libraries, BLAS/OpenMP and their threads, the CPU, the OS.

Recorded in ``summary.json`` under ``environment`` (and so in every record), so that a replay on another machine
can say which of these differ. Everything here is fixed for a given machine and installation: nothing
time-dependent, no paths, no process ids, so a resumed run ends with the same ``summary.json`` as an
uninterrupted one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# The distributions whose arithmetic or behaviour a run's results depend on (those installed are listed).
PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "hydra-core", "omegaconf", "encord")
# Variables that choose numeric kernels (OpenBLAS, numpy's SIMD paths, torch's ATen, oneDNN and MKL); recorded
# when set, since they change the last digits the way another CPU does.
KERNEL_VARIABLES = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                    "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
# threadpoolctl's fields that describe a library. Of its file path only the folder's name is kept ("numpy.libs",
# "scikit_learn.libs"): it tells which package brought the library without naming the install location.
LIBRARY_FIELDS = ("user_api", "internal_api", "version", "threading_layer", "architecture", "num_threads")

# What the CPU must offer (Linux /proc/cpuinfo flag names) to run each x86-64 OpenBLAS kernel family; a family
# not listed is never forced (see ``can_run_openblas_kernel``).
_AVX512 = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
OPENBLAS_KERNEL_NEEDS = {
    "Katmai": frozenset({"sse2"}),  # what some builds report for the Prescott and Core2 families
    "Prescott": frozenset({"pni"}),
    "Core2": frozenset({"ssse3"}),
    "Penryn": frozenset({"sse4_1"}),
    "Nehalem": frozenset({"sse4_2"}),
    "Sandybridge": frozenset({"avx"}),
    "Haswell": frozenset({"avx2", "fma"}),
    "Zen": frozenset({"avx2", "fma"}),
    "SkylakeX": _AVX512,
    "Cooperlake": _AVX512 | {"avx512_bf16"},
    "SapphireRapids": _AVX512 | {"avx512_bf16", "avx512_fp16", "amx_bf16"},
}


def describe() -> dict[str, Any]:
    """The environment of this process, as JSON-ready values."""
    return {
        "python": platform.python_version(),
        "packages": package_versions(),
        "threadpools": threadpools(),
        "numpy_simd": numpy_simd(),
        "kernel_variables": {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ},
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
    }


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torch only for its version would cost seconds)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def threadpools() -> list[dict[str, Any]]:
    """The BLAS and OpenMP libraries of numpy, scipy and scikit-learn, with their current thread counts.

    threadpoolctl lists only libraries loaded so far, and which are loaded depends on the stages this process
    happened to run (a resumed run skips some). So the three, and faiss (the neighbour index), are loaded here
    first, and torch's own bundled libraries are left out (torch is imported only by some runs; its threads
    are the config's ``threads``).
    """
    import numpy  # noqa: F401  (loads numpy's BLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
    import sklearn  # noqa: F401  (loads scikit-learn's OpenMP runtime)

    from plugins.neighbours import faiss_module

    faiss_module()  # the BLAS the neighbour index computes with
    from threadpoolctl import threadpool_info

    torch_dir = _package_dir("torch")
    libraries = []
    for info in threadpool_info():
        path = Path(info.get("filepath") or "")
        if torch_dir is not None and torch_dir in path.parents:
            continue
        entry = {"folder": path.parent.name}
        entry.update({key: info[key] for key in LIBRARY_FIELDS if info.get(key) is not None})
        if entry not in libraries:
            libraries.append(entry)
    return sorted(libraries, key=lambda e: (str(e.get("user_api")), e["folder"], str(e.get("internal_api"))))


def numpy_simd() -> list[str]:
    """The SIMD targets numpy dispatches to on this CPU (they decide the last digits of exp, log, sums)."""
    import importlib

    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, then numpy 1
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        features = module.__cpu_features__
        return [target for target in module.__cpu_dispatch__ if features.get(target)]
    return []


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; macOS: sysctl; elsewhere what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5, check=False)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return frozenset()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def can_run_openblas_kernel(name: str) -> bool:
    """Whether this CPU has every instruction the named OpenBLAS kernel family uses (forcing one it lacks
    would crash the process on its first matrix product)."""
    needs = OPENBLAS_KERNEL_NEEDS.get(name)
    return needs is not None and platform.machine() in ("x86_64", "AMD64") and needs <= cpu_flags()


def openblas_kernel(description: dict[str, Any] | None) -> str | None:
    """The one OpenBLAS kernel family a description names (None: not OpenBLAS, not recorded, or several)."""
    names = {
        library.get("architecture")
        for library in (description or {}).get("threadpools") or []
        if isinstance(library, dict) and library.get("internal_api") == "openblas"
    }
    return names.pop() if len(names) == 1 and None not in names else None


def differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """``"what: recorded -> here"`` for every item of the two descriptions that differs; flattened keys."""
    if recorded is None:
        return ["environment not recorded"]
    before, after = _flatten(recorded), _flatten(current)
    return [
        f"{key}: {before.get(key, 'absent')} -> {after.get(key, 'absent')}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def _flatten(description: dict[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in description.items():
        if key in ("packages", "kernel_variables") and isinstance(value, dict):
            flat.update({name: str(setting) for name, setting in value.items()})
        elif key == "threadpools" and isinstance(value, list):
            for library in value:
                if not isinstance(library, dict):
                    continue
                name = f"{library.get('internal_api', '?')} in {library.get('folder', '?')}"
                for field in ("version", "architecture", "threading_layer", "num_threads"):
                    if field in library:
                        flat[f"{name} {field}"] = str(library[field])
        elif isinstance(value, list):
            flat[key] = " ".join(map(str, value))
        else:
            flat[key] = str(value)
    return flat


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()
