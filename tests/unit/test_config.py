import re
from dataclasses import fields
from pathlib import Path

import pytest

from server.config import BatchingOverrides, ServerConfig, build_parser, parse_config


def test_defaults_are_safe():
    config = parse_config([], {})
    assert config.host == "127.0.0.1" and config.port == 8000
    assert config.api_key is None and config.truncate is True
    assert config.max_inputs == 2048 and config.max_request_bytes > 0


# A value other than the default for the fields whose type alone does not give one: (flag/env text, field value).
SAMPLES = {
    "model_repository": ("elsewhere", Path("elsewhere")),
    "models": ("a,b", ("a", "b")),
    "host": ("::1", "::1"),
    "device": ("cpu", "cpu"),
    "cuda_options": ("device_id=1", (("device_id", "1"),)),
    "request_timeout_ms": ("250", 250),
    "chunking": ("mean", "mean"),
    "api_key": ("k", "k"),
    "log_level": ("debug", "DEBUG"),
    "max_batch_size": ("4", 4),
    "max_batch_tokens": ("512", 512),
    "max_queue_delay_us": ("100", 100),
    "max_queue_size": ("9", 9),
}


def field_samples():
    """(field path, text, value) for every field of ServerConfig, read from the dataclasses (not from the option
    table the parser is built from), so a field without a flag, or a flag wired to the wrong field, fails."""
    nested = {f.name: f for f in fields(BatchingOverrides)}
    for f in [*(f for f in fields(ServerConfig) if f.name != "batching"), *nested.values()]:
        path = ("batching", f.name) if f.name in nested else (f.name,)
        if f.name in SAMPLES:
            yield path, *SAMPLES[f.name]
        elif isinstance(f.default, bool):
            yield path, str(not f.default).lower(), not f.default
        elif isinstance(f.default, (int, float)):
            yield path, str(f.default + 1), f.default + 1
        else:
            raise AssertionError(f"no sample value for ServerConfig field {f.name}: add one to SAMPLES")


def read(config, path):
    for name in path:
        config = getattr(config, name)
    return config


@pytest.mark.parametrize("path, text, value", list(field_samples()), ids=lambda v: str(v).replace(" ", ""))
def test_every_field_is_set_by_its_flag_and_by_its_env_var(path, text, value):
    flag, env = "--" + path[-1].replace("_", "-"), "OES_" + path[-1].upper()
    assert read(parse_config([], {}), path) != value
    assert read(parse_config([flag, text], {}), path) == value
    assert read(parse_config([], {env: text}), path) == value


def test_every_flag_has_help_that_names_its_env_var_and_no_measurements():
    """Help texts say what a flag does; measured numbers belong in benchmarks/results."""
    parser = build_parser({})
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        env = "OES_" + action.option_strings[0].lstrip("-").replace("-", "_").upper()
        assert action.help and action.help.endswith(f"[env {env}]"), action.option_strings
        assert len(action.help) > len(f" [env {env}]") + 10, action.option_strings
        assert not re.search(r"\d\s*(ms|µs|texts/s|req/s|%)(?![\w-])", action.help), action.help


def test_env_sets_and_cli_overrides():
    env = {"OES_PORT": "9001", "OES_TRUNCATE": "false", "OES_MODELS": "a,b", "OES_API_KEY": "k",
           "OES_CUDA_OPTIONS": "gpu_mem_limit=1024,arena_extend_strategy=kSameAsRequested",
           "OES_MAX_QUEUE_DELAY_US": "500"}
    config = parse_config(["--port", "9002"], env)
    assert config.port == 9002 and config.truncate is False and config.models == ("a", "b")
    assert config.api_key == "k" and config.batching.max_queue_delay_us == 500
    assert dict(config.cuda_options) == {"gpu_mem_limit": "1024", "arena_extend_strategy": "kSameAsRequested"}


@pytest.mark.parametrize("argv", [["--port", "0"], ["--device", "tpu"], ["--truncate", "maybe"],
                                  ["--intra-op-threads", "-1"], ["--cuda-options", "novalue"]])
def test_bad_values_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(argv, {})
    assert info.value.code == 2 and "error" in capsys.readouterr().err


def test_bad_env_value_names_the_variable(capsys):
    with pytest.raises(SystemExit):
        parse_config([], {"OES_PORT": "eighty"})
    assert "OES_PORT" in capsys.readouterr().err


def test_config_is_frozen():
    with pytest.raises(Exception):
        ServerConfig().port = 1  # type: ignore[misc]


def test_instance_count_flag_and_env():
    assert parse_config([], {}).instance_count == 0
    assert parse_config([], {"OES_INSTANCE_COUNT": "3"}).instance_count == 3
    assert parse_config(["--instance-count", "2"], {}).instance_count == 2


@pytest.mark.parametrize("argv, env", [(["--inference-threads", "2"], {}), (["--inference-threads=2"], {}),
                                       ([], {"OES_INFERENCE_THREADS": "2"})])
def test_the_removed_inference_threads_flag_points_to_instance_count(argv, env, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(argv, env)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "was removed" in err and "--instance-count" in err


def test_grpc_flags():
    assert (ServerConfig().grpc, ServerConfig().grpc_port) == (True, 8001)
    config = parse_config(["--grpc-port", "0"], {"OES_GRPC": "false"})
    assert config.grpc is False and config.grpc_port == 0
    assert parse_config([], {"OES_GRPC_PORT": "9101"}).grpc_port == 9101
    with pytest.raises(SystemExit):
        parse_config(["--grpc-port", "70000"], {})
