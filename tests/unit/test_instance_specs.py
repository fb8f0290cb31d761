"""How a model's instances become sessions and dedicated inference threads, from config.pbtxt and the flags."""

from pathlib import Path

import pytest

from server import layout
from server.config import ServerConfig
from server.repository import ModelConfig, ModelEntry, model_config_pb2


def entry(*groups) -> ModelEntry:
    config = ModelConfig(name="m", max_batch_size=8)
    config.instance_group.extend(groups)
    return ModelEntry("m", 1, config, Path("/repo/m/1"))


def cpu_group(count=1):
    return model_config_pb2.ModelInstanceGroup(count=count, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_by_default_one_instance_runs_one_thread_over_every_cpu(monkeypatch, cpus):
    monkeypatch.setattr(layout, "available_cpus", lambda: cpus)
    (spec,) = layout.instance_specs(entry(cpu_group()), ServerConfig())
    assert (spec.instances, spec.intra_op_threads, spec.device) == (1, cpus, "cpu")
    (bare,) = layout.instance_specs(entry(), ServerConfig())  # no instance_group: Triton's one CPU instance
    assert (bare.instances, bare.intra_op_threads) == (1, cpus)


def test_instances_share_one_session_and_split_its_cpus(monkeypatch):
    monkeypatch.setattr(layout, "available_cpus", lambda: 8)
    (spec,) = layout.instance_specs(entry(cpu_group(2)), ServerConfig())
    assert (spec.instances, spec.intra_op_threads) == (2, 4)
    (flag,) = layout.instance_specs(entry(cpu_group(2)), ServerConfig(instance_count=8))
    assert (flag.instances, flag.intra_op_threads) == (8, 1)  # --instance-count overrides the config's count
    (fixed,) = layout.instance_specs(entry(cpu_group()), ServerConfig(instance_count=2, intra_op_threads=3))
    assert (fixed.instances, fixed.intra_op_threads) == (2, 3)


def test_loaded_models_divide_the_cpus(monkeypatch):
    monkeypatch.setattr(layout, "available_cpus", lambda: 2)
    assert [layout.cpus_per_model(n) for n in (0, 1, 2, 3)] == [2, 2, 1, 1]
    (spec,) = layout.instance_specs(entry(cpu_group()), ServerConfig(), cpu_share=layout.cpus_per_model(2))
    assert (spec.instances, spec.intra_op_threads) == (1, 1)


def test_gpu_instances_have_a_session_and_a_thread_each(monkeypatch):
    monkeypatch.setattr(layout, "available_cpus", lambda: 8)
    specs = layout.instance_specs(entry(cpu_group(2)), ServerConfig(device="gpu"))
    assert [(s.device, s.instances, s.intra_op_threads) for s in specs] == [("gpu", 1, 1), ("gpu", 1, 1)]
