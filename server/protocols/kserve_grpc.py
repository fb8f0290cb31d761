"""KServe v2 / Triton gRPC: Triton's own protobuf messages <-> the shared KServe request and bodies. No I/O.

The messages are `tritonclient.grpc.service_pb2` (Triton's grpc_service.proto). Tensors go through the checks
of `protocols/kserve.py`: the same names, data types, shapes, limits and messages as over HTTP, and the same
request `parameters` (prompt, truncation direction, chunking: `options_from_parameters`). `TEXT` comes as
`contents.bytes_contents` or as `raw_input_contents` (each element a little-endian uint32 length and its
bytes); the ids as `contents.int64_contents` or raw little-endian INT64. The parse runs on the event loop, so
every count is checked before anything is converted: the shape, then the number of elements against it (and
the first dimension against --max-inputs), then at most that many elements are converted. The embedding (and the chunk
outputs) go back as `raw_output_contents`, as Triton returns outputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2

from ..errors import invalid
from ..options import DEFAULT, options_from_parameters
from ..repository import ModelConfig
from . import kserve

if TYPE_CHECKING:
    from ..registry import ModelState

_PARAMETER_FIELDS = ("bool_param", "int64_param", "string_param", "double_param", "uint64_param")


def parameters(params) -> dict[str, Any]:
    """A protobuf `map<string, InferParameter>` as plain Python values."""
    if not params:  # the common case, per request and per tensor: skip building the items view
        return {}
    values = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        values[key] = getattr(value, which) if which in _PARAMETER_FIELDS else None
    return values


# More dimensions than this are refused without copying them (the inputs have one or two).
MAX_DIMS = 8


def _shape(tensor, name: str) -> list[int]:
    if len(tensor.shape) > MAX_DIMS:
        raise invalid(f"input '{name}': shape has {len(tensor.shape)} dimensions; at most 2 are expected")
    return [int(d) for d in tensor.shape]


def _contents(tensor, name: str, max_inputs: int) -> dict:
    """The tensor as `kserve.assemble_request` takes it when its data is in `contents`. The element count is
    checked against the shape before any element is converted (a message can hold millions of them)."""
    shape = _shape(tensor, name)
    if not shape or min(shape) <= 0 or shape[0] > max_inputs:
        return {"shape": shape, "data": []}  # the shared checks refuse it from the shape alone
    values = tensor.contents.bytes_contents if name == kserve.TEXT else tensor.contents.int64_contents
    needed = math.prod(shape)
    if len(values) != needed:
        raise invalid(f"input '{name}' has {len(values)} elements but its shape {shape} needs {needed}")
    if name == kserve.TEXT:
        return {"shape": shape, "data": kserve.decode_texts(list(values))}
    # Straight into an int64 array: a list of Python ints first cost far more (a 15 MB message: +576 MB at peak).
    return {"shape": shape, "data": np.fromiter(values, dtype=np.int64, count=needed)}


def _input_tensors(request, model: str, max_inputs: int) -> dict[str, tuple[dict, memoryview | None]]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(f"expected {len(request.inputs)} raw_input_contents (one per input), got {len(raw)}")
    found: dict[str, tuple[dict, memoryview | None]] = {}
    for index, tensor in enumerate(request.inputs):
        kserve.check_input(tensor.name, tensor.datatype, model, found)
        if tensor.parameters:
            kserve.check_parameters(parameters(tensor.parameters), f"input '{tensor.name}'")
        if raw:
            if tensor.HasField("contents"):
                raise invalid(f"input '{tensor.name}' has both 'contents' and raw_input_contents")
            found[tensor.name] = ({"shape": _shape(tensor, tensor.name)}, memoryview(raw[index]))
        else:
            found[tensor.name] = (_contents(tensor, tensor.name, max_inputs), None)
    if not found:
        raise invalid("'inputs' must be a non-empty list")
    return found


# A ModelInferRequest within these counts is parsed on the event loop; a larger one on a thread (converting
# millions of elements, or walking a huge parameter map, takes seconds).
INLINE_PARTS = 16
INLINE_ELEMENTS = 4096
INLINE_RAW_BYTES = 64 * 1024
_CONTENTS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents", "fp32_contents",
             "fp64_contents", "bytes_contents")


def is_small(request: service_pb2.ModelInferRequest) -> bool:
    """Whether parsing `request` is cheap enough for the event loop, from counts alone (each len() is O(1))."""
    inputs, outputs, raw = request.inputs, request.outputs, request.raw_input_contents
    if max(len(inputs), len(outputs), len(raw), len(request.parameters)) > INLINE_PARTS:
        return False
    elements = sum(len(o.parameters) for o in outputs) if outputs else 0
    with_contents = []  # most clients send raw_input_contents: then no tensor has `contents` to count
    for tensor in inputs:
        elements += len(tensor.shape) + len(tensor.parameters)
        if tensor.HasField("contents"):
            with_contents.append(tensor.contents)
            elements += sum(len(getattr(tensor.contents, field)) for field in _CONTENTS)
    if elements > INLINE_ELEMENTS:
        return False
    texts = sum(len(item) for contents in with_contents for item in contents.bytes_contents)
    return texts + sum(map(len, raw)) <= INLINE_RAW_BYTES


def parse_infer_request(request: service_pb2.ModelInferRequest, *, max_inputs: int,
                        max_input_chars: int) -> kserve.InferRequest:
    """A ModelInferRequest, checked exactly as an HTTP request is, as the shared request."""
    model = request.model_name
    params = kserve.check_parameters(parameters(request.parameters), "the request")
    timeout = params.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise invalid("'timeout' must be a non-negative integer (microseconds)")
    found = _input_tensors(request, model, max_inputs)
    outputs = _outputs(request, model)
    return kserve.assemble_request(found, request_id=request.id or None, outputs=outputs, timeout_us=timeout,
                                   model=model, max_inputs=max_inputs, max_input_chars=max_input_chars,
                                   options=options_from_parameters(params) if params else DEFAULT,
                                   outputs_given=bool(request.outputs),
                                   binary_default=True)


def _outputs(request, model: str) -> list[kserve.RequestedOutput]:
    """The requested outputs, checked one by one: a repeated name is refused when it is met, not after all."""
    if not request.outputs:
        return [_plain_output(kserve.OUTPUT, model)]
    outputs: list[kserve.RequestedOutput] = []
    seen: set[str] = set()
    for out in request.outputs:
        if out.parameters:
            output = kserve.requested_output(out.name, parameters(out.parameters), model, True)
        else:
            output = _plain_output(out.name, model)
        outputs.append(output)
        if output.name in seen:
            kserve.check_unique(outputs)  # raises the shared message
        seen.add(output.name)
    return outputs


@functools.lru_cache(maxsize=256)
def _plain_output(name: str, model: str) -> kserve.RequestedOutput:
    """An output requested without parameters: the same every time (a Triton client names each output of every
    request), so checked once. Refused names raise, and an exception is not cached."""
    return kserve.requested_output(name, {}, model, True)


def infer_response(*, model: str, version: str, request_id: str | None, tensors: dict[str, np.ndarray],
                   outputs: list[kserve.RequestedOutput]) -> service_pb2.ModelInferResponse:
    """The outputs as Triton answers over gRPC, little-endian in raw_output_contents: the embedding FP32
    [n, dim], the chunk outputs (`server/kserve_infer.py`) FP32 or INT64 as their arrays are."""
    response = service_pb2.ModelInferResponse(model_name=model, model_version=version, id=request_id or "")
    for output in outputs:
        array = tensors[output.name]
        datatype, wire = ("INT64", "<i8") if array.dtype.kind in "iu" else ("FP32", "<f4")
        response.outputs.add(name=output.name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(np.ascontiguousarray(array, dtype=wire).tobytes())
    return response


def server_metadata(version: str) -> service_pb2.ServerMetadataResponse:
    return service_pb2.ServerMetadataResponse(name="onnx-embedding-server", version=version,
                                              extensions=kserve.EXTENSIONS)


def model_metadata(name: str, versions: list[str], config: ModelConfig) -> service_pb2.ModelMetadataResponse:
    """The same metadata as HTTP's `GET /v2/models/<m>`, derived from the same conformed config."""
    return json_format.ParseDict(kserve.model_metadata_dict(name, versions, config),
                                 service_pb2.ModelMetadataResponse())


def model_config(config: ModelConfig) -> service_pb2.ModelConfigResponse:
    return service_pb2.ModelConfigResponse(config=config)


def statistics(entries: list[dict]) -> service_pb2.ModelStatisticsResponse:
    """Triton's statistics JSON (what HTTP serves) as the gRPC message of the same fields."""
    return json_format.ParseDict({"model_stats": entries}, service_pb2.ModelStatisticsResponse(),
                                 ignore_unknown_fields=True)


def repository_index(entries: Iterable[ModelState], ready_only: bool) -> service_pb2.RepositoryIndexResponse:
    response = service_pb2.RepositoryIndexResponse()
    for row in kserve.index_rows(entries):
        if not ready_only or row.get("state") == "READY":
            response.models.add(name=row["name"], version=row.get("version", ""), state=row["state"],
                                reason=row.get("reason", ""))
    return response


def load_parameters(request) -> dict[str, Any] | None:
    """The parameters of a RepositoryModelLoad request, in the shape `kserve.check_load_request` checks."""
    params = {key: value.WhichOneof("parameter_choice") for key, value in request.parameters.items()}
    return {"parameters": params} if params else None
