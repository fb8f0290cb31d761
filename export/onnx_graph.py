"""The ONNX graph: optimum's sentence-transformers export, reduced to the one output the server fetches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import TensorProto, helper

from server.repository import OUTPUT_EMBEDDING

from .logs import quiet

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

OPTIMUM_MODEL_FILE = "model.onnx"  # the file optimum's exporter writes (not the repository's name for it)
TOKEN_EMBEDDINGS = "token_embeddings"
BATCH_AXIS = "batch_size"
SEQUENCE_AXIS = "sequence_length"


def export_sentence_transformer(model: SentenceTransformer, workdir: Path) -> onnx.ModelProto:
    """optimum's exporter (library_name="sentence_transformers"): Pooling, Dense, Normalize in the graph."""
    from optimum.exporters.onnx.convert import onnx_export_from_model
    from optimum.exporters.tasks import TasksManager

    TasksManager.standardize_model_attributes(model, library_name="sentence_transformers")
    with quiet():
        onnx_export_from_model(model, output=workdir, task="feature-extraction", do_validation=False)
    return onnx.load(str(workdir / OPTIMUM_MODEL_FILE))


def finalize(model: onnx.ModelProto, dimension: int) -> onnx.ModelProto:
    """Keep only `sentence_embedding` as output, typed [batch, dimension]; prune what no longer feeds it."""
    outputs = [o for o in model.graph.output if o.name == OUTPUT_EMBEDDING]
    if not outputs:
        raise ValueError(f"the exported graph has no {OUTPUT_EMBEDDING} output")
    del model.graph.output[:]
    model.graph.output.append(
        helper.make_tensor_value_info(OUTPUT_EMBEDDING, TensorProto.FLOAT, [BATCH_AXIS, dimension])
    )
    prune(model)
    onnx.checker.check_model(model)
    return model


def prune(model: onnx.ModelProto) -> None:
    """Remove nodes and initializers that no graph output depends on."""
    graph = model.graph
    needed = _ancestors(graph, [o.name for o in graph.output])
    kept = [node for index, node in enumerate(graph.node) if index in needed]
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _ancestors(graph: onnx.GraphProto, tensors: list[str]) -> set[int]:
    """Indices of the nodes that the given tensors are computed from."""
    producer = {output: index for index, node in enumerate(graph.node) for output in node.output}
    seen: set[int] = set()
    stack = list(tensors)
    while stack:
        index = producer.get(stack.pop())
        if index is not None and index not in seen:
            seen.add(index)
            stack.extend(graph.node[index].input)
    return seen


def input_names(model: onnx.ModelProto) -> list[str]:
    initializers = {init.name for init in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


@dataclass(frozen=True)
class Split:
    """The transformer encoder (graph inputs → token_embeddings) and the head that pools and normalizes."""

    encoder: onnx.ModelProto
    head: tuple[onnx.NodeProto, ...]
    head_initializers: tuple[onnx.TensorProto, ...]


def split_encoder(model: onnx.ModelProto, hidden_size: int) -> Split:
    graph = model.graph
    encoder_nodes = _ancestors(graph, [TOKEN_EMBEDDINGS])
    if not encoder_nodes:
        raise ValueError(f"the graph has no {TOKEN_EMBEDDINGS} tensor to split at")
    nodes = [node for index, node in enumerate(graph.node) if index in encoder_nodes]
    head = tuple(node for index, node in enumerate(graph.node) if index not in encoder_nodes)
    encoder_inputs = {name for node in nodes for name in node.input}
    head_inputs = {name for node in head for name in node.input}
    output = helper.make_tensor_value_info(
        TOKEN_EMBEDDINGS, TensorProto.FLOAT, [BATCH_AXIS, SEQUENCE_AXIS, hidden_size]
    )
    encoder_graph = helper.make_graph(
        nodes,
        "encoder",
        [i for i in graph.input if i.name in encoder_inputs],
        [output],
        initializer=[init for init in graph.initializer if init.name in encoder_inputs],
    )
    encoder = helper.make_model(
        encoder_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    head_initializers = tuple(init for init in graph.initializer if init.name in head_inputs)
    return Split(encoder=encoder, head=head, head_initializers=head_initializers)


def join_encoder(original: onnx.ModelProto, encoder: onnx.ModelProto, split: Split) -> onnx.ModelProto:
    """The original graph's inputs and outputs around a transformed encoder and the untouched fp32 head."""
    graph = helper.make_graph(
        list(encoder.graph.node) + list(split.head),
        original.graph.name,
        list(original.graph.input),
        list(original.graph.output),
        initializer=list(encoder.graph.initializer) + list(split.head_initializers),
    )
    opsets = {o.domain: o for o in list(original.opset_import) + list(encoder.opset_import)}
    joined = helper.make_model(graph, opset_imports=list(opsets.values()), ir_version=original.ir_version)
    joined.producer_name = original.producer_name
    joined.producer_version = original.producer_version
    prune(joined)
    return joined


def save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save(model, str(path))
