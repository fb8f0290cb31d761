import pytest

import grpc

import orjson

from server.errors import (PROTOCOL_ERRORS, ErrorKind, Protocol, ServerError, error_body, grpc_status_name,
                           status_for)
from server.repository import RepositoryError, find_model, validate_model_name


def test_every_kind_has_a_status_for_every_protocol():
    assert set(PROTOCOL_ERRORS) == set(ErrorKind)
    for kind in ErrorKind:
        for protocol in Protocol:
            assert 400 <= status_for(kind, protocol) < 600


def test_protocol_specific_statuses():
    assert status_for(ErrorKind.OVERLOADED, Protocol.OPENAI) == 429
    assert status_for(ErrorKind.OVERLOADED, Protocol.KSERVE) == 503
    assert status_for(ErrorKind.INVALID_INPUT, Protocol.TEI) == 422


def test_each_protocol_builds_its_error_body_from_the_table():
    error = ServerError(ErrorKind.OVERLOADED, "busy")
    assert orjson.loads(error_body(error, Protocol.OPENAI)) == {"error": {
        "message": "busy", "type": "overloaded", "param": None, "code": "rate_limit_exceeded"}}
    assert orjson.loads(error_body(error, Protocol.KSERVE)) == {"error": "busy"}
    assert orjson.loads(error_body(error, Protocol.TEI)) == {"error": "busy", "error_type": "Overloaded"}
    unauthorized = orjson.loads(error_body(ServerError(ErrorKind.UNAUTHORIZED, "key"), Protocol.OPENAI))["error"]
    assert (unauthorized["type"], unauthorized["code"]) == ("authentication_error", "invalid_api_key")


def test_error_kinds_name_no_protocol():
    """Kind values are neutral: the protocols' type strings live in the table, not in the kinds."""
    openai_types = {row.openai_type for row in PROTOCOL_ERRORS.values()}
    assert not {kind.value for kind in ErrorKind} & {"invalid_request_error", "authentication_error",
                                                    "not_found_error", "internal_error"} & openai_types


@pytest.mark.parametrize("kind, code", [
    (ErrorKind.INVALID_INPUT, grpc.StatusCode.INVALID_ARGUMENT), (ErrorKind.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    (ErrorKind.OVERLOADED, grpc.StatusCode.RESOURCE_EXHAUSTED), (ErrorKind.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    (ErrorKind.UNAUTHORIZED, grpc.StatusCode.UNAUTHENTICATED), (ErrorKind.UNSUPPORTED, grpc.StatusCode.UNIMPLEMENTED),
    (ErrorKind.TIMEOUT, grpc.StatusCode.DEADLINE_EXCEEDED), (ErrorKind.INTERNAL, grpc.StatusCode.INTERNAL),
    (ErrorKind.PAYLOAD_TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ErrorKind.METHOD_NOT_ALLOWED, grpc.StatusCode.UNIMPLEMENTED),
])
def test_every_kind_has_a_grpc_status(kind, code):
    assert grpc.StatusCode[grpc_status_name(kind)] is code


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "", "a" * 200, "x\x00y", "a\\b", "~root"])
def test_model_names_cannot_leave_the_repository(name):
    with pytest.raises(RepositoryError):
        validate_model_name(name)


def test_valid_names_pass():
    for name in ("all-MiniLM-L6-v2", "bge_small.en-int8", "m1"):
        assert validate_model_name(name) == name


def test_a_symlinked_model_outside_the_repository_is_not_found(tmp_path):
    outside = tmp_path / "outside"
    (outside / "1").mkdir(parents=True)
    (outside / "config.pbtxt").write_text('name: "evil"')
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "evil").symlink_to(outside)
    with pytest.raises(RepositoryError):
        find_model(repo, "evil")


def test_a_version_folder_symlinked_outside_the_repository_is_not_loaded(tmp_path):
    outside = tmp_path / "outside" / "2"
    outside.mkdir(parents=True)
    (outside / "model.onnx").write_bytes(b"onnx")
    (outside / "tokenizer.json").write_text("{}")
    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"onnx")
    (model / "1" / "tokenizer.json").write_text("{}")
    (model / "config.pbtxt").write_text('name: "m"')
    (model / "2").symlink_to(outside)
    assert find_model(tmp_path / "repo", "m").version == 1
    with pytest.raises(RepositoryError):
        find_model(tmp_path / "repo", "m", version=2)
