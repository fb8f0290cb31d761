"""ONNX Runtime sessions with explicit threading and execution-provider settings."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def available_cpus() -> int:
    """CPUs this process may actually use: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class SessionSpec:
    """How to build one session, and how many instances (each one dedicated inference thread) share it."""

    model_path: Path
    device: str  # "cpu" or "gpu"
    device_id: int = 0
    intra_op_threads: int = 0
    spinning: bool = True
    cuda_options: tuple[tuple[str, str], ...] = ()
    niceness: int = 0
    cpu_memory_arena: bool = True
    instances: int = 1


def session_options(
    intra_op_threads: int, spinning: bool = True, cpu_memory_arena: bool = True
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = cpu_memory_arena
    options.intra_op_num_threads = intra_op_threads or available_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Shapes change with every batch; a memory pattern planned for one shape is rarely reused.
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def cuda_provider_options(spec: SessionSpec) -> dict[str, str]:
    options = {
        "device_id": str(spec.device_id),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "1",
    }
    options.update(dict(spec.cuda_options))
    return options


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from PyPI's nvidia-* wheels when installed (extra `gpu-wheels`); system ones otherwise."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc malloc_trim): building a session frees a copy of the
    weights that would otherwise stay in RSS (~30 MB for MiniLM fp32). A no-op elsewhere."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by `niceness`; threads it starts later inherit it (Linux: nice is per
    thread). Inference then yields the CPU to the event loop whenever both want it."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, os.getpriority(os.PRIO_PROCESS, thread_id) + niceness))
    except OSError as exc:
        log.warning("could not lower the priority of thread %d: %s", thread_id, exc)


def _in_thread_with_niceness(niceness: int, build: Callable[[], ort.InferenceSession]) -> ort.InferenceSession:
    """Call `build` on a fresh thread of lowered priority, so the intra-op threads ORT starts inherit it."""
    outcome: list = []

    def target() -> None:
        lower_thread_priority(niceness)
        try:
            outcome.append(build())
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.append(exc)

    thread = threading.Thread(target=target, name="ort-session-builder")
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def create_session(spec: SessionSpec) -> ort.InferenceSession:
    """Build the session (its intra-op threads at `spec.niceness`); never a silent CPU run of a GPU instance."""
    if spec.niceness > 0:
        return _in_thread_with_niceness(spec.niceness, lambda: _create_session(spec))
    return _create_session(spec)


def _create_session(spec: SessionSpec) -> ort.InferenceSession:
    options = session_options(spec.intra_op_threads, spec.spinning, spec.cpu_memory_arena)
    if spec.device == "gpu":
        _preload_cuda_libraries()
        providers: list = [(CUDA, cuda_provider_options(spec)), CPU]
    else:
        providers = [CPU]
    session = ort.InferenceSession(str(spec.model_path), sess_options=options, providers=providers)
    active = session.get_providers()
    if spec.device == "gpu" and (not active or active[0] != CUDA):
        raise RuntimeError(
            f"{spec.model_path}: the CUDA execution provider did not load (active providers: {active}; "
            f"onnxruntime {ort.__version__}, device {ort.get_device()}); refusing to serve a GPU instance from CPU"
        )
    log.info("session %s on %s, intra-op threads %d", spec.model_path, active[0], options.intra_op_num_threads)
    return session
