import pytest

from server.config import ServerConfig, build_parser, env_name, parse_config


def test_defaults_are_safe():
    config = parse_config([], {})
    assert config.host == "127.0.0.1" and config.port == 8000
    assert config.api_key is None and config.truncate is True
    assert config.max_inputs == 2048 and config.max_request_bytes > 0


def test_every_option_has_an_env_var_and_is_in_help():
    parser = build_parser({})
    help_text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            flag = action.option_strings[0]
            assert env_name(flag) in help_text, flag


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
