"""How a model's instances become sessions and inference threads, from config.pbtxt and the server flags."""

from pathlib import Path

import pytest

from server import model
from server.config import ServerConfig
from server.repository import ModelConfig, ModelEntry, model_config_pb2


def entry(*groups) -> ModelEntry:
    config = ModelConfig(name="m", max_batch_size=8)
    config.instance_group.extend(groups)
    return ModelEntry("m", 1, config, Path("/repo/m/1"))


def cpu_group(count=1):
    return model_config_pb2.ModelInstanceGroup(count=count, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)


@pytest.mark.parametrize("cpus", [1, 2, 8])
def test_by_default_every_cpu_gets_an_inference_thread_with_one_intra_op_thread(monkeypatch, cpus):
    monkeypatch.setattr(model, "available_cpus", lambda: cpus)
    (spec,) = model._instance_specs(entry(cpu_group()), ServerConfig())
    assert (spec.inference_threads, spec.intra_op_threads, spec.device) == (cpus, 1, "cpu")


def test_cpus_are_divided_among_instances_and_flags_override(monkeypatch):
    monkeypatch.setattr(model, "available_cpus", lambda: 8)
    specs = model._instance_specs(entry(cpu_group(2)), ServerConfig())
    assert [(s.inference_threads, s.intra_op_threads) for s in specs] == [(4, 1), (4, 1)]
    (one,) = model._instance_specs(entry(cpu_group()), ServerConfig(inference_threads=1))
    assert (one.inference_threads, one.intra_op_threads) == (1, 8)  # the single-thread, all-cores layout
    (fixed,) = model._instance_specs(entry(cpu_group()), ServerConfig(inference_threads=2, intra_op_threads=3))
    assert (fixed.inference_threads, fixed.intra_op_threads) == (2, 3)


def test_gpu_instances_have_one_thread_each(monkeypatch):
    monkeypatch.setattr(model, "available_cpus", lambda: 8)
    specs = model._instance_specs(entry(cpu_group()), ServerConfig(device="gpu"))
    assert [(s.device, s.inference_threads, s.intra_op_threads) for s in specs] == [("gpu", 1, 1)]
