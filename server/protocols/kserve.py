"""KServe v2 / Triton HTTP: parse inference requests (JSON and binary tensor extension), build bodies. No I/O.

The tensor checks (`check_input`, `requested_output`, `assemble_request`, ...) and the metadata (derived from
the model config) are shared with KServe v2 over gRPC (`protocols/kserve_grpc.py`).

A model takes either a BYTES input `TEXT` of shape [N] or [N, 1] (the server tokenizes), or INT64
`input_ids` + `attention_mask` (+ optional `token_type_ids`, all zeros) of shape [N, L] from clients
that tokenize themselves; it returns the FP32 output `sentence_embedding` of shape [N, dim].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from ..errors import ErrorKind, ServerError, invalid
from . import bounded_json
from .values import check_text_lengths, is_count
from ..options import DEFAULT, EmbeddingOptions, options_from_parameters
from ..repository import (ATTENTION_MASK, CHUNK_OUTPUTS, INPUT_IDS, PLATFORM, TOKEN_TYPE_IDS, ModelConfig,
                          model_config_pb2)
from ..repository import OUTPUT_EMBEDDING as OUTPUT
from ..repository import TEXT_INPUT as TEXT

if TYPE_CHECKING:
    from ..registry import ModelState

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "statistics", "model_repository", "model_configuration", "parameters"]

_DATATYPES = {TEXT: "BYTES", INPUT_IDS: "INT64", ATTENTION_MASK: "INT64", TOKEN_TYPE_IDS: "INT64"}
_SHARED_MEMORY_KEYS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    texts: list[str] | None
    input_ids: np.ndarray | None  # [N, L] int64
    attention_mask: np.ndarray | None  # [N, L] int64
    outputs: list[RequestedOutput]
    timeout_us: int | None
    options: EmbeddingOptions = DEFAULT  # from the request parameters (see server/options.py)
    outputs_given: bool = True  # False: the client asked for no output by name, so it gets every one that applies
    binary_default: bool = False

    @property
    def count(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.input_ids)  # type: ignore[arg-type]


def server_metadata(version: str) -> bytes:
    return orjson.dumps({"name": "onnx-embedding-server", "version": version, "extensions": EXTENSIONS})


def datatype(data_type: int) -> str:
    """A ModelConfig data type as the protocol names it (Triton's rule: TYPE_STRING is BYTES)."""
    name = model_config_pb2.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def metadata_tensors(tensors, max_batch_size: int) -> list[dict]:
    """Config inputs or outputs as metadata lists them: with batching, the shape is [-1] + dims."""
    batch = [-1] if max_batch_size > 0 else []
    return [{"name": t.name, "datatype": datatype(t.data_type), "shape": batch + [int(d) for d in t.dims]}
            for t in tensors]


def model_metadata_dict(name: str, versions: list[str], config: ModelConfig) -> dict:
    """Model metadata derived from the (conformed) model config, so `/config` and metadata always agree."""
    return {
        "name": name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": metadata_tensors(config.input, config.max_batch_size),
        "outputs": metadata_tensors(config.output, config.max_batch_size),
    }


def model_metadata(name: str, versions: list[str], config: ModelConfig) -> bytes:
    return orjson.dumps(model_metadata_dict(name, versions, config))


_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


def model_config_json(config: ModelConfig) -> dict:
    """The ModelConfig as Triton's HTTP `/config` endpoint shows it (proto field names, enums as strings)."""
    as_dict = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _int64_as_numbers(config.DESCRIPTOR, as_dict)


def _int64_as_numbers(descriptor, value: dict) -> dict:
    """Proto3 JSON writes 64-bit integers as strings; Triton's /config writes numbers (dims: [-1], not ["-1"])."""
    for field in descriptor.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key in item:
                if value_field.message_type is not None:
                    _int64_as_numbers(value_field.message_type, item[key])
                elif value_field.cpp_type in _INT64:
                    item[key] = int(item[key])
        elif field.message_type is not None:
            for sub in item if isinstance(item, list) else [item]:
                _int64_as_numbers(field.message_type, sub)
        elif field.cpp_type in _INT64:
            value[field.name] = [int(v) for v in item] if isinstance(item, list) else int(item)
    return value


def model_config(config: ModelConfig) -> bytes:
    """The body of `GET /v2/models/{model}/config`."""
    return orjson.dumps(model_config_json(config))


def serialize_bytes(items: list[bytes]) -> bytes:
    """BYTES tensor wire format: each element is a little-endian uint32 length, then its bytes."""
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


def deserialize_bytes(buffer: bytes | memoryview, name: str = TEXT, *, max_items: int | None = None,
                      max_item_bytes: int | None = None) -> list[bytes]:
    """Split a BYTES tensor's binary data; refuse more than `max_items` elements or longer ones than
    `max_item_bytes` as soon as it sees one, before copying anything more."""
    view = memoryview(buffer)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if max_items is not None and len(items) >= max_items:
            raise invalid(f"input '{name}' holds more than the {max_items} elements its shape allows")
        if offset + 4 > end:
            raise invalid(f"input '{name}': a BYTES length prefix is cut short at byte {offset}")
        length = int.from_bytes(view[offset:offset + 4], "little")
        offset += 4
        if max_item_bytes is not None and length > max_item_bytes:
            raise invalid(f"input '{name}': element {len(items)} has {length} bytes, more than the "
                          f"{max_item_bytes} allowed")
        if offset + length > end:
            raise invalid(f"input '{name}': element {len(items)} declares {length} bytes but only "
                          f"{end - offset} remain in its binary data")
        items.append(bytes(view[offset:offset + length]))
        offset += length
    return items


def _split_body(raw: bytes, header_length: str | None, max_inputs: int) -> tuple[Any, memoryview]:
    if header_length is None:
        json_part, binary = raw, memoryview(b"")
    else:
        digits = header_length.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):  # int() takes "1_0", "+1", "١"
            raise invalid(f"{HEADER_LENGTH} must be an integer, got {header_length!r}")
        size = int(digits)
        if size == 0:
            raise invalid(f"raw binary requests ({HEADER_LENGTH}: 0) are not supported: send a JSON header")
        if not 0 < size <= len(raw):
            raise invalid(f"{HEADER_LENGTH} is {size} but the request body has {len(raw)} bytes")
        json_part, binary = raw[:size], memoryview(raw)[size:]
    if not json_part:
        raise invalid("the request body is empty; expected a JSON inference request")
    return bounded_json.loads(json_part, max_inputs=max_inputs, what="the request JSON",
                              not_json="failed to parse the request JSON"), binary


def _parameters(obj: dict, where: str) -> dict:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise invalid(f"'parameters' of {where} must be a JSON object")
    return check_parameters(params, where)


def check_parameters(params: dict, where: str) -> dict:
    """Reject shared-memory parameters (any protocol); return `params`."""
    if any(key in params for key in _SHARED_MEMORY_KEYS):
        raise ServerError(ErrorKind.UNSUPPORTED, f"shared memory is not supported ({where}); send the data "
                          "in the request body")
    return params


def _shape(tensor: dict, name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(is_count(d) for d in shape):
        raise invalid(f"input '{name}': 'shape' must be a list of non-negative integers")
    return shape


def _check_shape(name: str, model: str, shape: list[int], ok: bool, expected: str) -> None:
    if not ok:
        raise invalid(f"unexpected shape for input '{name}' for model '{model}'. Expected {expected}, "
                      f"got {shape}")


def _flatten_strings(data: Any, name: str, max_items: int) -> list[str]:
    """The strings of a (nested) JSON list, refusing more than `max_items` as soon as it sees one more."""
    flat: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if len(item) > max_items:
                raise invalid(f"input '{name}' holds more than the {max_items} elements its shape allows")
            stack.extend(reversed(item))
        elif isinstance(item, str):
            if len(flat) == max_items:
                raise invalid(f"input '{name}' holds more than the {max_items} elements its shape allows")
            flat.append(item)
        else:
            raise invalid(f"input '{name}': BYTES data in JSON must be strings")
    return flat


def decode_texts(items: list[bytes]) -> list[str]:
    try:
        return [item.decode("utf-8") for item in items]
    except UnicodeDecodeError as exc:
        raise invalid(f"input '{TEXT}' holds a string that is not valid UTF-8: {exc.reason}") from None


def _texts(tensor: dict, model: str, chunk: memoryview | None, max_inputs: int, max_input_chars: int
           ) -> list[str]:
    shape = _shape(tensor, TEXT)
    _check_shape(TEXT, model, shape, len(shape) in (1, 2) and shape[1:] in ([], [1]), "[-1] or [-1,1]")
    if shape[0] == 0:
        raise invalid(f"input '{TEXT}' holds no text: send at least one")
    if shape[0] > max_inputs:
        raise invalid(f"input '{TEXT}' holds {shape[0]} texts; at most {max_inputs} are allowed per request")
    if chunk is None:
        texts = _flatten_strings(tensor.get("data"), TEXT, shape[0])
    else:
        texts = decode_texts(deserialize_bytes(chunk, TEXT, max_items=shape[0], max_item_bytes=4 * max_input_chars))
    if len(texts) != shape[0]:
        raise invalid(f"input '{TEXT}' has {len(texts)} elements but its shape {shape} needs {shape[0]}")
    check_text_lengths(texts, max_input_chars, lambda index: f"input '{TEXT}': element {index}")
    return texts


def _int64(tensor: dict, name: str, model: str, chunk: memoryview | None, max_inputs: int) -> np.ndarray:
    shape = _shape(tensor, name)
    _check_shape(name, model, shape, len(shape) == 2, "[-1,-1]")
    if 0 in shape:
        raise invalid(f"input '{name}' holds no {'sequence' if shape[0] == 0 else 'token'}: its shape is {shape}")
    if shape[0] > max_inputs:
        raise invalid(f"input '{name}' holds {shape[0]} sequences; at most {max_inputs} are allowed")
    count = shape[0] * shape[1]
    if chunk is not None:
        if len(chunk) != count * 8:
            raise invalid(f"input '{name}': binary data has {len(chunk)} bytes, shape {shape} of INT64 needs "
                          f"{count * 8}")
        return np.frombuffer(chunk, dtype="<i8").astype(np.int64).reshape(shape)
    data = tensor.get("data")
    if isinstance(data, np.ndarray):  # gRPC's int64_contents, already converted and counted
        return data.reshape(shape)
    if not isinstance(data, list) or len(data) not in (count, shape[0]):
        raise invalid(f"input '{name}': 'data' must hold {count} integers for shape {shape}")
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError):
        raise invalid(f"input '{name}': 'data' must be a (nested) list of integers") from None
    if array.dtype.kind not in "iu" or array.size != count:
        raise invalid(f"input '{name}': 'data' must hold {count} integers for shape {shape}")
    return array.astype(np.int64).reshape(shape)


def _outputs(body: dict, model: str, binary_default: bool) -> list[RequestedOutput]:
    requested = body.get("outputs") or [{"name": OUTPUT}]
    if not isinstance(requested, list):
        raise invalid("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    for out in requested:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise invalid("each requested output must be an object with a string 'name'")
        outputs.append(requested_output(out["name"], _parameters(out, f"output '{out['name']}'"), model,
                                        binary_default))
    return check_unique(outputs)


def requested_output(name: str, params: dict, model: str, binary_default: bool) -> RequestedOutput:
    """One requested output, checked (any protocol): the embedding or a chunk output, no classification."""
    if name != OUTPUT and name not in CHUNK_OUTPUTS:
        raise invalid(f"unexpected inference output '{name}' for model '{model}'")
    check_parameters(params, f"output '{name}'")
    if params.get("classification"):
        raise ServerError(ErrorKind.UNSUPPORTED, f"classification is not supported for output '{name}'")
    binary = params.get("binary_data", binary_default)
    if not isinstance(binary, bool):
        raise invalid(f"output '{name}': 'binary_data' must be a boolean")
    return RequestedOutput(name, binary)


def check_unique(outputs: list[RequestedOutput]) -> list[RequestedOutput]:
    """Each output at most once (any protocol): a repeated one would be serialized again for nothing."""
    seen: set[str] = set()
    for output in outputs:
        if output.name in seen:
            raise invalid(f"output '{output.name}' is requested more than once")
        seen.add(output.name)
    return outputs


def check_input(name: str, datatype: Any, model: str, seen) -> None:
    """An input's name and data type are the model's, and it comes once (any protocol)."""
    if name not in _DATATYPES:
        raise invalid(f"unexpected inference input '{name}' for model '{model}'")
    if name in seen:
        raise invalid(f"input '{name}' is given more than once")
    if datatype != _DATATYPES[name]:
        raise invalid(f"inference input '{name}' data-type is '{datatype}', but model "
                      f"'{model}' expects '{_DATATYPES[name]}'")


def _collect_inputs(body: dict, binary: memoryview, model: str) -> dict[str, tuple[dict, memoryview | None]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise invalid("'inputs' must be a non-empty list")
    found: dict[str, tuple[dict, memoryview | None]] = {}
    offset = 0
    for tensor in inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise invalid("each input must be an object with a string 'name'")
        name = tensor["name"]
        check_input(name, tensor.get("datatype"), model, found)
        size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
        chunk = None
        if size is not None:
            if not is_count(size):
                raise invalid(f"input '{name}': 'binary_data_size' must be a non-negative integer")
            if "data" in tensor:
                raise invalid(f"input '{name}' has both 'data' and 'binary_data_size'")
            if offset + size > len(binary):
                raise invalid(f"input '{name}' declares {size} bytes of binary data but only "
                              f"{len(binary) - offset} remain after the JSON header")
            chunk = binary[offset:offset + size]
            offset += size
        elif "data" not in tensor:
            raise invalid(f"input '{name}' has neither 'data' nor 'binary_data_size'")
        found[name] = (tensor, chunk)
    if offset != len(binary):
        raise invalid(f"the request body has {len(binary) - offset} bytes after the inputs' binary data "
                      f"(check {HEADER_LENGTH} and each 'binary_data_size')")
    return found


def parse_infer_request(raw: bytes, header_length: str | None, *, model: str, max_inputs: int,
                        max_input_chars: int) -> InferRequest:
    body, binary = _split_body(raw, header_length, max_inputs)
    if not isinstance(body, dict):
        raise invalid("the inference request must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid("'id' must be a string")
    params = _parameters(body, "the request")
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise invalid("'binary_data_output' must be a boolean")
    timeout = params.get("timeout")
    if timeout is not None and not is_count(timeout):
        raise invalid("'timeout' must be a non-negative integer (microseconds)")
    found = _collect_inputs(body, binary, model)
    outputs = _outputs(body, model, binary_default)
    return assemble_request(found, request_id=request_id, outputs=outputs, timeout_us=timeout, model=model,
                            max_inputs=max_inputs, max_input_chars=max_input_chars,
                            options=options_from_parameters(params), outputs_given=bool(body.get("outputs")),
                            binary_default=binary_default)


def assemble_request(found: dict[str, tuple[dict, memoryview | None]], *, request_id: str | None,
                     outputs: list[RequestedOutput], timeout_us: int | None, model: str, max_inputs: int,
                     max_input_chars: int, options: EmbeddingOptions = DEFAULT,
                     outputs_given: bool = True, binary_default: bool = False) -> InferRequest:
    """Checked inputs -> one request (any protocol). `found` maps an input name to its tensor (`shape`, and
    `data` unless its bytes are the chunk) and its binary chunk; `options` come from the request parameters
    (`options_from_parameters`); `outputs_given` says whether the client named its outputs."""
    timeout = timeout_us or None
    if TEXT in found:
        if len(found) > 1:
            raise invalid(f"send either '{TEXT}' or '{INPUT_IDS}' + '{ATTENTION_MASK}', not both")
        tensor, chunk = found[TEXT]
        return InferRequest(request_id, _texts(tensor, model, chunk, max_inputs, max_input_chars), None, None,
                            outputs, timeout, options, outputs_given, binary_default)
    if INPUT_IDS not in found or ATTENTION_MASK not in found:
        raise invalid(f"model '{model}' needs input '{TEXT}' (BYTES), or inputs '{INPUT_IDS}' and "
                      f"'{ATTENTION_MASK}' (INT64)")
    arrays = {name: _int64(tensor, name, model, chunk, max_inputs) for name, (tensor, chunk) in found.items()}
    ids, mask = arrays[INPUT_IDS], arrays[ATTENTION_MASK]
    for name, array in arrays.items():
        if array.shape != ids.shape:
            raise invalid(f"input '{name}' has shape {list(array.shape)}, '{INPUT_IDS}' has "
                          f"{list(ids.shape)}")
    if len(ids) > max_inputs:
        raise invalid(f"input '{INPUT_IDS}' holds {len(ids)} sequences; at most {max_inputs} are allowed")
    if TOKEN_TYPE_IDS in arrays and arrays[TOKEN_TYPE_IDS][mask != 0].any():
        raise invalid(f"'{TOKEN_TYPE_IDS}' must be all zeros: the server embeds single-segment sequences")
    return InferRequest(request_id, None, ids, mask, outputs, timeout, options, outputs_given, binary_default)


def outputs_for(request: InferRequest, *, chunks: bool) -> list[RequestedOutput]:
    """The outputs to return: those the client named (chunk outputs included, whatever the chunking: see
    `server/kserve_infer.py`); a client that names none gets the embedding, and the chunk outputs too when the
    request chunks in mode 'chunks'."""
    if not chunks or request.outputs_given:
        return request.outputs
    return request.outputs + [RequestedOutput(name, request.binary_default) for name in CHUNK_OUTPUTS]


def sequences_from_ids(ids: np.ndarray, mask: np.ndarray, *, vocab_size: int, max_seq_length: int
                       ) -> list[np.ndarray]:
    """Strip the padding the mask marks; each sequence must already hold the model's special tokens."""
    if ((mask != 0) & (mask != 1)).any():
        raise invalid(f"'{ATTENTION_MASK}' must hold only 0 and 1")
    keep = mask.astype(bool)
    kept = ids[keep]
    if kept.size and (kept.min() < 0 or kept.max() >= vocab_size):
        raise invalid(f"'{INPUT_IDS}' holds token ids outside this model's vocabulary [0, {vocab_size})")
    lengths = keep.sum(axis=1)
    if (lengths == 0).any():
        raise invalid(f"row {int(np.argmin(lengths))} of '{ATTENTION_MASK}' has no 1: every sequence needs "
                      "tokens")
    if (lengths > max_seq_length).any():
        row = int(np.argmax(lengths))
        raise invalid(f"row {row} of '{INPUT_IDS}' has {int(lengths[row])} tokens, more than this model's "
                      f"max_seq_length {max_seq_length}")
    return [np.ascontiguousarray(row[k]) for row, k in zip(ids, keep)]


def timeout_ms(timeout_us: int | None, server_timeout_ms: int | None) -> int | None:
    """A request may only shorten the server's queue deadline (Triton's allow_timeout_override)."""
    if timeout_us is None:
        return server_timeout_ms
    requested = max(1, math.ceil(timeout_us / 1000))
    return min(requested, server_timeout_ms) if server_timeout_ms else requested


_WIRE = {"FP32": "<f4", "INT64": "<i8"}


def build_infer_response(*, model: str, version: str, request_id: str | None, vectors: np.ndarray,
                         outputs: list[RequestedOutput], extra: dict[str, np.ndarray] | None = None
                         ) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON header.

    `extra` holds the other outputs by name (the chunk tensors), FP32 or INT64 arrays.
    """
    header: dict[str, Any] = {} if request_id is None else {"id": request_id}
    header.update(model_name=model, model_version=version, outputs=[])
    tensors = {OUTPUT: vectors, **(extra or {})}
    chunks = []
    for output in outputs:
        array = tensors[output.name]
        datatype = "INT64" if array.dtype.kind in "iu" else "FP32"
        entry: dict[str, Any] = {"name": output.name, "datatype": datatype, "shape": list(array.shape)}
        if output.binary:
            data = array.astype(_WIRE[datatype], copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = np.ascontiguousarray(array, dtype=_WIRE[datatype]).ravel()
        header["outputs"].append(entry)
    json_part = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return json_part, None
    return json_part + b"".join(chunks), len(json_part)


def index_rows(entries: Iterable[ModelState]) -> list[dict[str, str]]:
    """The registry's model states as KServe repository index rows (HTTP JSON; gRPC builds its messages from
    these rows too)."""
    return [{"name": e.name, "version": str(e.version), "state": "READY", "reason": ""} if e.ready
            else {"name": e.name, "state": "UNAVAILABLE", "reason": e.reason} for e in entries]


def repository_index(entries: Iterable[ModelState], body: Any) -> bytes:
    """`POST /v2/repository/index`: body is empty or {"ready": bool}; ready=true lists only READY models."""
    if body is None:
        body = {}
    if not isinstance(body, dict) or not isinstance(body.get("ready", False), bool):
        raise invalid("the repository index request must be empty or {\"ready\": <bool>}")
    rows = index_rows(entries)
    if body.get("ready"):
        rows = [row for row in rows if row.get("state") == "READY"]
    return orjson.dumps(rows)


def check_load_request(body: Any) -> None:
    """Load/unload bodies are empty or {"parameters": {...}}; config and file overrides are not supported."""
    if body is None:
        return
    if not isinstance(body, dict) or not isinstance(body.get("parameters", {}), dict):
        raise invalid("the request body must be empty or {\"parameters\": {...}}")
    overrides = [key for key in body.get("parameters", {}) if key == "config" or key.startswith("file:")]
    if overrides:
        raise ServerError(ErrorKind.UNSUPPORTED, f"load parameters {overrides} are not supported: the server "
                          "loads the model as it is in the repository")


def stats(entries: list[dict]) -> bytes:
    return orjson.dumps({"model_stats": entries})
