"""The OpenAPI 3.0 document of the API routes (KServe's versioned forms included), served at /openapi.json."""

from __future__ import annotations

from typing import Any

_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": "string", "nullable": True}, "code": {"type": "string", "nullable": True}},
    }},
}
_KSERVE_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_TEI_ERROR = {"type": "object", "required": ["error", "error_type"],
              "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}}

_TOKEN_IDS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
_CHUNKING = {"type": "object", "required": ["mode"],
             "properties": {"mode": {"type": "string", "enum": ["mean", "chunks", "none"]},
                            "overlap": {"type": "integer", "minimum": 0}}}
_INPUT_TYPES = ["search_query", "search_document", "classification", "clustering"]
_OPTIONS = {  # server/options.py
    "prompt_name": {"type": "string"},
    "prompt": {"type": "string"},
    "input_type": {"type": "string", "enum": _INPUT_TYPES},
    "chunking": _CHUNKING,
}
_CHUNK = {"type": "object", "required": ["embedding", "start", "end"],
          "properties": {"embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
                         "start": {"type": "integer"}, "end": {"type": "integer"}}}
_EMBEDDINGS_REQUEST = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {"oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048},
            _TOKEN_IDS,
            {"type": "array", "items": _TOKEN_IDS, "minItems": 1, "maxItems": 2048},
        ]},
        "model": {"type": "string"},
        "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "user": {"type": "string"},
        "truncation_direction": {"type": "string", "enum": ["right", "left"]},
        **_OPTIONS,
    },
}
_EMBEDDINGS_RESPONSE = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["object", "index", "embedding"],
            "properties": {"object": {"type": "string"}, "index": {"type": "integer"},
                           "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}},
                                                   {"type": "string"}]},
                           "chunks": {"type": "array", "items": _CHUNK}}}},
        "model": {"type": "string"},
        "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                  "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}},
    },
}
_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"],
           "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                          "datatype": {"type": "string"}, "parameters": {"type": "object"},
                          "data": {"type": "array"}}}
_INFER_REQUEST = {"type": "object", "required": ["inputs"],
                  "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                                 "inputs": {"type": "array", "items": _TENSOR},
                                 "outputs": {"type": "array", "items": {
                                     "type": "object", "required": ["name"],
                                     "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
_INFER_RESPONSE = {"type": "object", "required": ["model_name", "outputs"],
                   "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                                  "id": {"type": "string"}, "outputs": {"type": "array", "items": _TENSOR}}}
_TEI_EMBED_REQUEST = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "inputs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "normalize": {"type": "boolean"}, "truncate": {"type": "boolean"},
        "truncation_direction": {"type": "string", "enum": ["Right", "Left", "right", "left"]},
        "dimensions": {"type": "integer", "minimum": 1},
        "model": {"type": "string"},
        **_OPTIONS,
    },
}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any] | None, error: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "success", **(ok or {})}}
    for code in codes:
        responses[str(code)] = {"description": "error", **_json(error)}
    return responses


_CLIENT_ERRORS = (400, 401, 404, 405, 408, 413, 422, 429, 500, 503)


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "onnx-embedding-server", "version": version,
                 "description": "OpenAI-compatible, KServe v2 / Triton and TEI-compatible sentence embeddings."},
        "paths": {**_openai_paths(), **_health_paths(), **_kserve_paths(), **_tei_paths(), **_metrics_paths()},
    }


def _openai_paths() -> dict[str, Any]:
    return {
        "/v1/embeddings": {"post": {"operationId": "createEmbeddings", "requestBody": {
            "required": True, **_json(_EMBEDDINGS_REQUEST)},
            "responses": _responses(_json(_EMBEDDINGS_RESPONSE), _OPENAI_ERROR, *_CLIENT_ERRORS)}},
        "/v1/models": {"get": {"operationId": "listModels", "responses": _responses(
            _json({"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}}),
            _OPENAI_ERROR, 401)}},
    }


def _health_paths() -> dict[str, Any]:
    def probe(operation: str, state: str) -> dict[str, Any]:
        return {"get": {"operationId": operation, "responses": {
            "200": {"description": state}, "503": {"description": f"not {state}"}}}}

    return {"/health": probe("health", "ready"), "/v2/health/live": probe("live", "live"),
            "/v2/health/ready": probe("ready", "ready")}


def _kserve(ok: dict[str, Any] | None) -> dict[str, Any]:
    return _responses(ok, _KSERVE_ERROR, 400, 401, 404, 405, 408, 413, 500, 501, 503)


def _kserve_get(operation: str, ok: dict[str, Any] | None, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation, **({"parameters": list(parameters)} if parameters else {}),
                    "responses": _kserve(ok)}}


def _model_paths(versioned: bool) -> dict[str, Any]:
    """The per-model routes, as `/v2/models/{model}/...` or `/v2/models/{model}/versions/{version}/...`."""
    some_object = _json({"type": "object"})
    base, parameters, suffix = (("/v2/models/{model}/versions/{version}", (_MODEL, _VERSION), "Version") if versioned
                                else ("/v2/models/{model}", (_MODEL,), ""))
    return {
        base: _kserve_get("modelMetadata" + suffix, some_object, *parameters),
        base + "/ready": _kserve_get("modelReady" + suffix, None, *parameters),
        base + "/config": _kserve_get("modelConfig" + suffix, some_object, *parameters),
        base + "/stats": _kserve_get("modelStats" + suffix, some_object, *parameters),
        base + "/infer": {"post": {
            "operationId": "infer" + suffix, "parameters": list(parameters),
            "requestBody": {"required": True, **_json(_INFER_REQUEST)},
            "responses": _kserve(_json(_INFER_RESPONSE))}},
    }


def _kserve_paths() -> dict[str, Any]:
    some_object = _json({"type": "object"})
    return {
        "/v2": _kserve_get("serverMetadata", some_object),
        **_model_paths(versioned=False),
        **_model_paths(versioned=True),
        "/v2/models/stats": _kserve_get("allStats", some_object),
        "/v2/repository/index": {"post": {"operationId": "repositoryIndex",
                                          "responses": _kserve(_json({"type": "array"}))}},
        "/v2/repository/models/{model}/load": {"post": {"operationId": "loadModel", "parameters": [_MODEL],
                                                        "responses": _kserve(None)}},
        "/v2/repository/models/{model}/unload": {"post": {"operationId": "unloadModel", "parameters": [_MODEL],
                                                          "responses": _kserve(None)}},
    }


_TEI_TOKENIZE_REQUEST = {
    "type": "object", "required": ["inputs"],
    "properties": {"inputs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                   "add_special_tokens": {"type": "boolean"}, "model": {"type": "string"}},
}


def _tei(ok: dict[str, Any]) -> dict[str, Any]:
    return _responses(ok, _TEI_ERROR, 400, 401, 404, 408, 413, 422, 429, 500, 503)


def _tei_paths() -> dict[str, Any]:
    return {
        "/embed": {"post": {"operationId": "teiEmbed", "requestBody": {"required": True,
                                                                       **_json(_TEI_EMBED_REQUEST)},
                            "responses": _tei(_json({"type": "array", "items": {"type": "array"}}))}},
        "/tokenize": {"post": {"operationId": "teiTokenize",
                               "requestBody": {"required": True, **_json(_TEI_TOKENIZE_REQUEST)},
                               "responses": _tei(_json({"type": "array"}))}},
        "/info": {"get": {"operationId": "teiInfo", "responses": _tei(_json({"type": "object"}))}},
    }


def _metrics_paths() -> dict[str, Any]:
    return {"/metrics": {"get": {"operationId": "metrics", "responses": {
        "200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
        "401": {"description": "error", **_json(_OPENAI_ERROR)}}}}}
