"""Where the per-item stages run: in this process (``compute=local``) or as Ray tasks (``compute=ray``).

A stage splits its items into shards and hands one function and the list of shards to :meth:`Compute.map`,
which returns the results in shard order. The local backend runs the shards one after another, Ray runs them
as tasks; the stage combines the results in the same order either way, so both give the same bits.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import ConfigError
from runner.settings import ComputeSettings

log = logging.getLogger("runner")
T = TypeVar("T")
R = TypeVar("R")
REPO = Path(__file__).resolve().parents[1]


def shards(n: int, size: int) -> list[slice]:
    """``range(n)`` cut into consecutive slices of ``size`` items (the last may be shorter)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, max(1, size))]


def peak_rss_mib() -> float:
    """The largest resident set this process has had, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class PeakMemory:
    """Peak resident memory of this process, per stage and over the whole invocation.

    Linux keeps one high-water mark per process (``VmHWM``) and lets a process reset its own
    (``/proc/self/clear_refs``); each stage resets it at its start and reads it at its end, and the overall
    peak is the largest reading. Where that is not available, every figure is the process's peak so far.
    """

    def __init__(self) -> None:
        self.overall = self.read()

    @staticmethod
    def read() -> float:
        try:
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return peak_rss_mib()

    def start(self) -> None:
        self.overall = max(self.overall, self.read())
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
        except OSError:
            pass

    def stop(self) -> float:
        peak = self.read()
        self.overall = max(self.overall, peak)
        return peak


class Compute:
    """Runs one function over shards, in order, in this process."""

    name = "local"

    def map(self, function: Callable[[T], R], shards: Sequence[T]) -> list[R]:
        return [function(shard) for shard in shards]

    def worker_peak_rss_mib(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class RayCompute(Compute):
    """Runs each shard as a Ray task, on a local instance (``address`` None) or a running cluster."""

    name = "ray"

    def __init__(self, address: str | None, num_cpus: int | None, threads: int) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("compute=ray needs Ray: pip install 'al-runner[distributed]'") from None
        self.ray = ray
        self.peaks: list[float] = []
        # Workers import this checkout's runner and plugins, and compute with the run's thread count.
        env = {"PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                                   "include_dashboard": False, "configure_logging": False}
        if address is None:
            options.update(num_cpus=num_cpus, _node_ip_address="127.0.0.1")
        else:
            check_answers(address)
            options["address"] = address
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"compute.address={address}: no Ray cluster answers there ({str(exc).splitlines()[0]})"
                ) from None
        self._task = ray.remote(_run_shard)

    def map(self, function: Callable[[T], R], shards: Sequence[T]) -> list[R]:
        function_ref = self.ray.put(function)
        answers = self.ray.get([self._task.remote(function_ref, shard) for shard in shards])
        self.peaks.extend(peak for _, peak in answers)
        return [result for result, _ in answers]

    def worker_peak_rss_mib(self) -> float | None:
        return max(self.peaks) if self.peaks else None

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def check_answers(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line, a Ray address where nothing accepts a connection (Ray itself retries for minutes)."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"compute.address={address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"compute.address={address}: no Ray cluster answers there ({exc})") from None


def _run_shard(function: Callable[[Any], Any], shard: Any) -> tuple[Any, float]:
    return function(shard), peak_rss_mib()


def open_compute(settings: ComputeSettings, threads: int) -> Compute:
    """The backend ``compute.backend`` names; a Ray address where nothing answers is refused here."""
    if settings.backend == "ray":
        return RayCompute(settings.address, settings.num_cpus, threads)
    return Compute()
