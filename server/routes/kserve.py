"""KServe v2 / Triton HTTP routes: metadata, readiness, config, inference, statistics, model repository."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from .. import kserve_infer, model_control
from ..errors import ErrorKind, ServerError, invalid
from ..model import ServedModel
from ..protocols import bounded_json, kserve
from ..state import CONFIG, REGISTRY
from .common import (SentOnceResponse, check_response_size, json_response, parse_body, render, server_version,
                     timing_headers)

routes = web.RouteTableDef()

# Paths within the /v2 sub-application (server/app.py).
MODEL = "/models/{model}"
VERSIONED = "/models/{model}/versions/{version:[0-9]+}"


def _model(request: web.Request) -> ServedModel:
    return request.config_dict[REGISTRY].get(request.match_info["model"], request.match_info.get("version"))


# Control bodies (index, load, unload) are {} or {"ready": ...} / {"parameters": {...}}: they hold no inputs, so
# their JSON is bounded as a request of one input would be.
CONTROL_BODY_INPUTS = 1


def _optional_json_of(raw: bytes) -> Any:
    return bounded_json.loads(raw, max_inputs=CONTROL_BODY_INPUTS) if raw.strip() else None


async def _optional_json(request: web.Request) -> Any:
    """A control request's JSON body (None when empty), parsed on the bounded path of every body."""
    return await parse_body(request, _optional_json_of)


@routes.get("")
async def server_metadata(request: web.Request) -> web.Response:
    return json_response(kserve.server_metadata(server_version()))


@routes.get("/models/stats")
async def all_stats(request: web.Request) -> web.Response:
    return json_response(kserve.stats([model.stats.as_json() for model in request.config_dict[REGISTRY]]))


@routes.get(MODEL)
@routes.get(VERSIONED)
async def model_metadata(request: web.Request) -> web.Response:
    model = _model(request)
    return json_response(kserve.model_metadata(model.info.name, [str(model.info.version)], model.entry.config))


@routes.get(MODEL + "/ready")
@routes.get(VERSIONED + "/ready")
async def model_ready(request: web.Request) -> web.Response:
    try:
        ready = _model(request).healthy
    except ServerError:
        ready = False
    if not ready:
        raise invalid("Model version not ready")
    return web.Response(status=200)


@routes.get(MODEL + "/config")
@routes.get(VERSIONED + "/config")
async def model_config(request: web.Request) -> web.Response:
    return json_response(kserve.model_config(_model(request).entry.config))


@routes.get(MODEL + "/stats")
@routes.get(VERSIONED + "/stats")
async def model_stats(request: web.Request) -> web.Response:
    return json_response(kserve.stats([_model(request).stats.as_json()]))


@routes.post(MODEL + "/infer")
@routes.post(VERSIONED + "/infer")
async def infer(request: web.Request) -> web.Response:
    model, config = _model(request), request.config_dict[CONFIG]  # the body is already read (middleware)
    header_length = request.headers.get(kserve.HEADER_LENGTH)
    parsed = await parse_body(request, lambda raw: kserve.parse_infer_request(
        raw, header_length, model=model.info.name, max_inputs=config.max_inputs,
        max_input_chars=config.max_input_chars))
    binary = all(output.binary for output in parsed.outputs)
    inferred = await kserve_infer.infer(model, parsed, config, binary=binary)
    check_response_size(request, inferred.floats, binary=all(output.binary for output in inferred.outputs))
    result = inferred.result
    build = partial(kserve.build_infer_response, model=model.info.name, version=str(model.info.version),
                    request_id=parsed.id, vectors=result.vectors, outputs=inferred.outputs, extra=inferred.tensors)
    body, header_length = await render(build, inferred.floats)
    headers = timing_headers(result)
    if header_length is None:
        return json_response(body, headers=headers)
    headers[kserve.HEADER_LENGTH] = str(header_length)
    return SentOnceResponse(body=body, headers=headers, content_type="application/octet-stream")


@routes.post("/repository/index")
async def repository_index(request: web.Request) -> web.Response:
    """Read-only, so served whatever --model-control says, as Triton serves its index in model-control mode
    'none'; only load and unload are refused when model control is off. It needs the API key like every route
    but health."""
    body = await _optional_json(request)
    return json_response(kserve.repository_index(request.config_dict[REGISTRY].entries(), body))


async def _checked_control_request(request: web.Request) -> str:
    model_control.check_enabled(request.config_dict)
    kserve.check_load_request(await _optional_json(request))
    return request.match_info["model"]


@routes.post("/repository/models/{model}/load")
async def load_model(request: web.Request) -> web.Response:
    await model_control.load(request.config_dict, await _checked_control_request(request))
    return web.Response(status=200)


@routes.post("/repository/models/{model}/unload")
async def unload_model(request: web.Request) -> web.Response:
    await model_control.unload(request.config_dict, await _checked_control_request(request))
    return web.Response(status=200)


@routes.route("*", "/repository/{repository}/index")
@routes.route("*", "/repository/{repository}/models/{model}/{action}")
async def named_repository(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.UNSUPPORTED, "'repository_name' specification is not supported")


@routes.route("*", "/systemsharedmemory{tail:.*}")
@routes.route("*", "/cudasharedmemory{tail:.*}")
@routes.route("*", "/trace/setting")
@routes.route("*", MODEL + "/trace/setting")
@routes.route("*", "/logging")
async def unsupported(request: web.Request) -> web.Response:
    raise ServerError(ErrorKind.UNSUPPORTED, f"{request.path} is not supported by this server")
