"""The OpenAPI 3.0 document of every route, served at /openapi.json."""

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
        **_OPTIONS,
    },
}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any] | None, error: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "success", **(ok or {})}}
    for code in codes:
        responses[str(code)] = {"description": "error", **_json(error)}
    return responses


_CLIENT_ERRORS = (400, 401, 404, 405, 408, 413, 422, 429, 500, 503)


def openapi_document(version: str) -> dict[str, Any]:
    openai_ops = _responses(_json(_EMBEDDINGS_RESPONSE), _OPENAI_ERROR, *_CLIENT_ERRORS)
    kserve = lambda ok: _responses(ok, _KSERVE_ERROR, 400, 401, 404, 405, 408, 413, 500, 501, 503)
    tei = lambda ok: _responses(ok, _TEI_ERROR, 400, 401, 404, 408, 413, 422, 429, 500, 503)
    return {
        "openapi": "3.0.3",
        "info": {"title": "onnx-embedding-server", "version": version,
                 "description": "OpenAI-compatible, KServe v2 / Triton and TEI-compatible sentence embeddings."},
        "paths": {
            "/v1/embeddings": {"post": {"operationId": "createEmbeddings", "requestBody": {
                "required": True, **_json(_EMBEDDINGS_REQUEST)}, "responses": openai_ops}},
            "/v1/models": {"get": {"operationId": "listModels", "responses": _responses(
                _json({"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}}),
                _OPENAI_ERROR, 401)}},
            "/health": {"get": {"operationId": "health", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/v2/health/live": {"get": {"operationId": "live", "responses": {
                "200": {"description": "live"}, "503": {"description": "not live"}}}},
            "/v2/health/ready": {"get": {"operationId": "ready", "responses": {
                "200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/v2": {"get": {"operationId": "serverMetadata", "responses": kserve(_json({"type": "object"}))}},
            "/v2/models/{model}": {"get": {"operationId": "modelMetadata", "parameters": [_MODEL],
                                           "responses": kserve(_json({"type": "object"}))}},
            "/v2/models/{model}/ready": {"get": {"operationId": "modelReady", "parameters": [_MODEL],
                                                 "responses": kserve(None)}},
            "/v2/models/{model}/config": {"get": {"operationId": "modelConfig", "parameters": [_MODEL],
                                                  "responses": kserve(_json({"type": "object"}))}},
            "/v2/models/{model}/stats": {"get": {"operationId": "modelStats", "parameters": [_MODEL],
                                                 "responses": kserve(_json({"type": "object"}))}},
            "/v2/models/stats": {"get": {"operationId": "allStats", "responses": kserve(_json({"type": "object"}))}},
            "/v2/models/{model}/infer": {"post": {
                "operationId": "infer", "parameters": [_MODEL],
                "requestBody": {"required": True, **_json(_INFER_REQUEST)},
                "responses": kserve(_json(_INFER_RESPONSE))}},
            "/v2/repository/index": {"post": {"operationId": "repositoryIndex",
                                              "responses": kserve(_json({"type": "array"}))}},
            "/v2/repository/models/{model}/load": {"post": {"operationId": "loadModel", "parameters": [_MODEL],
                                                            "responses": kserve(None)}},
            "/v2/repository/models/{model}/unload": {"post": {"operationId": "unloadModel", "parameters": [_MODEL],
                                                              "responses": kserve(None)}},
            "/embed": {"post": {"operationId": "teiEmbed", "requestBody": {"required": True,
                                                                           **_json(_TEI_EMBED_REQUEST)},
                                "responses": tei(_json({"type": "array", "items": {"type": "array"}}))}},
            "/tokenize": {"post": {"operationId": "teiTokenize", "requestBody": {"required": True, **_json({
                "type": "object", "required": ["inputs"],
                "properties": {"inputs": {"oneOf": [{"type": "string"}, {"type": "array",
                                                                         "items": {"type": "string"}}]},
                               "add_special_tokens": {"type": "boolean"}}})},
                "responses": tei(_json({"type": "array"}))}},
            "/info": {"get": {"operationId": "teiInfo", "responses": tei(_json({"type": "object"}))}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {
                "200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": {"description": "error", **_json(_OPENAI_ERROR)}}}},
        },
    }
