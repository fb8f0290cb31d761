"""How a model's instances map onto sessions, dedicated inference threads and cores.

The layout follows Triton: `instance_group { count: N kind: KIND_CPU | KIND_GPU }` in config.pbtxt (or
`--instance-count N`, which overrides the count) gives N instances, and every instance runs in ONE dedicated
inference thread, the only thread that runs that instance's batches. The default is one instance, so one
thread whose run uses every CPU the model may use (intra-op threads; inter-op 1).

- CPU instances of a model share one ONNX Runtime session (weights and memory arena held once; `Run` is
  thread-safe), and split the model's CPUs among them: intra-op = max(1, CPUs for the model // instances).
- The CPUs for a model are the CPUs this process may use (affinity, cgroup quota) divided by the number of
  models loaded at start-up (`cpu_share`), so two busy models do not oversubscribe the cores.
- GPU instances each own a session with explicit CUDA provider options; their intra-op pool only runs the
  few nodes left on the CPU, so it has one thread.
"""

from __future__ import annotations

from pathlib import Path

from . import repository as repo
from .config import ServerConfig
from .session import SessionSpec, available_cpus


def cpus_per_model(models: int) -> int:
    """CPUs each of `models` loaded models may use (at least 1)."""
    return max(1, available_cpus() // max(1, models))


def instance_specs(entry: repo.ModelEntry, config: ServerConfig, cpu_share: int | None = None) -> list[SessionSpec]:
    """One SessionSpec per session to build: the CPU instances share one, every GPU instance has its own."""
    cpu_share = cpu_share or available_cpus()
    cpu_instances, gpu_instances = _instances(entry, config)
    cuda_options = tuple({**dict(_config_cuda_options(entry.config)), **dict(config.cuda_options)}.items())
    specs = []
    if cpu_instances:
        intra_op = config.intra_op_threads or max(1, cpu_share // cpu_instances)
        specs.append(SessionSpec(entry.onnx_path, "cpu", 0, intra_op, config.ort_spinning, (),
                                 config.inference_niceness, config.cpu_memory_arena, instances=cpu_instances))
    for device_id in gpu_instances:
        specs.append(SessionSpec(gpu_model_path(entry), "gpu", device_id, 1, config.ort_spinning, cuda_options,
                                 config.inference_niceness, config.cpu_memory_arena, instances=1))
    return specs


def _instances(entry: repo.ModelEntry, config: ServerConfig) -> tuple[int, list[int]]:
    """(CPU instance count, the device id of every GPU instance) from instance_group, --instance-count, --device."""
    group_type = repo.model_config_pb2.ModelInstanceGroup
    groups = list(entry.config.instance_group) or [group_type(count=1, kind=group_type.KIND_CPU)]
    if config.instance_count:
        groups = [group_type(count=config.instance_count, kind=groups[0].kind, gpus=list(groups[0].gpus))]
    cpu, gpu_ids = 0, []
    for group in groups:
        count = max(1, group.count)
        on_gpu = config.device == "gpu" or (config.device == "config" and group.kind == group_type.KIND_GPU)
        if on_gpu:
            gpu_ids += [device_id for device_id in (list(group.gpus) or [0]) for _ in range(count)]
        else:
            cpu += count
    return cpu, gpu_ids


def gpu_model_path(entry: repo.ModelEntry) -> Path:
    """GPU instances of an fp32 model run its published fp16 variant (`<name>-fp16`, same version) when present."""
    if entry.parameter(repo.PARAM_PRECISION, repo.FP32) != repo.FP32:
        return entry.onnx_path
    fp16_name = repo.variant_name(entry.name, repo.FP16)
    variant = repo.version_directory(entry.directory.parent.parent, fp16_name, entry.version) / repo.MODEL_FILE
    return variant if variant.is_file() else entry.onnx_path


def _config_cuda_options(config: repo.ModelConfig) -> list[tuple[str, str]]:
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name == "cuda":
            return list(accelerator.parameters.items())
    return []
