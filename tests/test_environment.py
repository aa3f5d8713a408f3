"""The environment description that runs record in summary.json, and how two of them are compared."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest

from runner import environment
from tests.conftest import REPO


def test_description_is_plain_json_and_stable() -> None:
    first = environment.describe()
    assert json.loads(json.dumps(first)) == first
    assert environment.describe() == first  # nothing time- or call-dependent
    assert first["packages"]["numpy"] == np.__version__
    assert first["python"] == ".".join(map(str, sys.version_info[:3]))
    assert first["cpu"] and first["machine"]


def test_packages_are_those_installed() -> None:
    for name, version in environment.package_versions().items():
        assert importlib.metadata.version(name) == version
    assert set(environment.package_versions()) <= set(environment.PACKAGES)


def test_threadpools_name_libraries_without_paths() -> None:
    libraries = environment.threadpools()
    assert any(lib["user_api"] == "blas" for lib in libraries)
    for lib in libraries:
        assert "filepath" not in lib and "/" not in lib["folder"]
        assert lib["num_threads"] >= 1


@pytest.mark.slow
def test_describing_does_not_import_torch() -> None:
    probe = "import sys; from runner import environment; environment.describe(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_threadpools_are_the_same_whether_or_not_torch_is_loaded() -> None:
    """A resumed run may skip the stage that imported torch; its summary must not change for that."""
    pytest.importorskip("torch")
    probe = ("import json, sys; from runner import environment; before = environment.threadpools(); "
             "import torch; print(json.dumps([before, environment.threadpools()]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout)
    assert before == after


def test_kernel_variables_are_recorded_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    recorded = environment.describe()
    assert recorded["kernel_variables"]["OPENBLAS_CORETYPE"] == "Haswell"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert "ATEN_CPU_CAPABILITY: absent -> avx2" in environment.differences(recorded, environment.describe())


def test_differences_name_what_changed() -> None:
    here = {"python": "3.11.7", "packages": {"numpy": "2.4.6", "torch": "2.13.0"}, "cpu": "AMD EPYC",
            "numpy_simd": ["X86_V3", "X86_V4"],
            "threadpools": [{"folder": "numpy.libs", "user_api": "blas", "internal_api": "openblas",
                             "version": "0.3.31", "architecture": "SkylakeX", "num_threads": 1}]}
    recorded = {"python": "3.11.7", "packages": {"numpy": "1.26.4"}, "cpu": "Intel Xeon",
                "numpy_simd": ["X86_V3"],
                "threadpools": [{"folder": "numpy.libs", "user_api": "blas", "internal_api": "openblas",
                                 "version": "0.3.31", "architecture": "Haswell", "num_threads": 1}]}
    assert environment.differences(recorded, here) == [
        "cpu: Intel Xeon -> AMD EPYC",
        "numpy: 1.26.4 -> 2.4.6",
        "numpy_simd: X86_V3 -> X86_V3 X86_V4",
        "openblas in numpy.libs architecture: Haswell -> SkylakeX",
        "torch: absent -> 2.13.0",
    ]
    assert environment.differences(here, here) == []
    assert environment.differences(None, here) == ["environment not recorded"]


def test_openblas_kernels_are_forced_only_where_the_cpu_has_their_instructions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(environment.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"pni", "ssse3", "avx", "avx2", "fma"}))
    assert environment.can_run_openblas_kernel("Haswell") and environment.can_run_openblas_kernel("Sandybridge")
    assert not environment.can_run_openblas_kernel("SkylakeX")  # no AVX-512 on this CPU
    assert not environment.can_run_openblas_kernel("Bulldozer")  # a family we know nothing about
    monkeypatch.setattr(environment.platform, "machine", lambda: "arm64")
    assert not environment.can_run_openblas_kernel("Haswell")
