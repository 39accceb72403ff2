"""An ONNX graph of BertForSequenceClassification, built from numpy weights with onnx.helper (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization is a core op from 17 on
IR_VERSION = 8


@dataclass(frozen=True)
class BertShape:
    vocab_size: int = 30522
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    intermediate: int = 512
    max_positions: int = 512
    type_vocab: int = 2
    labels: int = 1
    layer_norm_eps: float = 1e-12


def random_weights(shape: BertShape, seed: int) -> dict[str, np.ndarray]:
    """BERT-like initialisation; attention projections a little wider so attention is not uniform."""
    rng = np.random.default_rng(seed)
    h, i = shape.hidden, shape.intermediate

    def normal(*dims: int, std: float = 0.02) -> np.ndarray:
        return rng.normal(0.0, std, size=dims).astype(np.float32)

    weights = {
        "bert.embeddings.word_embeddings.weight": normal(shape.vocab_size, h, std=0.05),
        "bert.embeddings.position_embeddings.weight": normal(shape.max_positions, h),
        "bert.embeddings.token_type_embeddings.weight": normal(shape.type_vocab, h),
        "bert.embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "bert.embeddings.LayerNorm.bias": np.zeros(h, np.float32),
    }
    for layer in range(shape.layers):
        p = f"bert.encoder.layer.{layer}."
        for name in ("query", "key", "value"):
            weights[f"{p}attention.self.{name}.weight"] = normal(h, h, std=0.15)
            weights[f"{p}attention.self.{name}.bias"] = normal(h)
        weights[f"{p}attention.output.dense.weight"] = normal(h, h, std=0.08)
        weights[f"{p}attention.output.dense.bias"] = normal(h)
        weights[f"{p}attention.output.LayerNorm.weight"] = np.ones(h, np.float32)
        weights[f"{p}attention.output.LayerNorm.bias"] = np.zeros(h, np.float32)
        weights[f"{p}intermediate.dense.weight"] = normal(h, i, std=0.08)
        weights[f"{p}intermediate.dense.bias"] = normal(i)
        weights[f"{p}output.dense.weight"] = normal(i, h, std=0.04)
        weights[f"{p}output.dense.bias"] = normal(h)
        weights[f"{p}output.LayerNorm.weight"] = np.ones(h, np.float32)
        weights[f"{p}output.LayerNorm.bias"] = np.zeros(h, np.float32)
    weights["bert.pooler.dense.weight"] = normal(h, h, std=0.15)
    weights["bert.pooler.dense.bias"] = normal(h)
    weights["classifier.weight"] = normal(h, shape.labels)
    weights["classifier.bias"] = np.zeros(shape.labels, np.float32)
    return weights


class GraphBuilder:
    """Nodes and initializers of one fixture graph; every op's output is named after its type and a counter."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attributes: object) -> str:
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def linear(self, x: str, prefix: str) -> str:
        return self.op("Add", [self.op("MatMul", [x, f"{prefix}.weight"]), f"{prefix}.bias"])

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op("LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], axis=-1, epsilon=eps)

    def model(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        """The checked ONNX model of this graph, at the fixtures' opset and IR version."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lambda-reranker-fixture"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def build_model(
    shape: BertShape, weights: dict[str, np.ndarray], *, expose_pooled: bool = False
) -> onnx.ModelProto:
    """The graph HF's ONNX export of BertForSequenceClassification computes, op for op."""
    g = GraphBuilder()
    for name, value in weights.items():
        g.constant(name, value)
    head_dim = shape.hidden // shape.heads
    i64 = np.int64
    g.constant("c_zero", np.array(0, i64))
    g.constant("c_one", np.array(1, i64))
    g.constant("c_one_f", np.array(1.0, np.float32))
    g.constant("c_mask_fill", np.array(-10000.0, np.float32))
    g.constant("c_scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    g.constant("c_half", np.array(0.5, np.float32))
    g.constant("c_sqrt2", np.array(math.sqrt(2.0), np.float32))
    g.constant("c_split_heads", np.array([0, 0, shape.heads, head_dim], i64))
    g.constant("c_merge_heads", np.array([0, 0, shape.hidden], i64))
    g.constant("c_mask_axes", np.array([1, 2], i64))

    sequence_length = g.op("Gather", [g.op("Shape", ["input_ids"]), "c_one"], axis=0)
    positions = g.op("Range", ["c_zero", sequence_length, "c_one"])
    embeddings = g.op(
        "Add",
        [
            g.op(
                "Add",
                [
                    g.op("Gather", ["bert.embeddings.word_embeddings.weight", "input_ids"]),
                    g.op("Gather", ["bert.embeddings.position_embeddings.weight", positions]),
                ],
            ),
            g.op("Gather", ["bert.embeddings.token_type_embeddings.weight", "token_type_ids"]),
        ],
    )
    hidden = g.layer_norm(embeddings, "bert.embeddings.LayerNorm", shape.layer_norm_eps)

    mask = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT), "c_mask_axes"])
    additive_mask = g.op("Mul", [g.op("Sub", ["c_one_f", mask]), "c_mask_fill"])

    for layer in range(shape.layers):
        p = f"bert.encoder.layer.{layer}."

        def heads(name: str, perm: list[int], source: str = hidden, p: str = p) -> str:
            projected = g.linear(source, f"{p}attention.self.{name}")
            return g.op("Transpose", [g.op("Reshape", [projected, "c_split_heads"])], perm=perm)

        query, key, value = (
            heads("query", [0, 2, 1, 3]),
            heads("key", [0, 2, 3, 1]),
            heads("value", [0, 2, 1, 3]),
        )
        attention = g.op("Add", [g.op("Mul", [g.op("MatMul", [query, key]), "c_scale"]), additive_mask])
        context = g.op("MatMul", [g.op("Softmax", [attention], axis=-1), value])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), "c_merge_heads"])
        attended = g.linear(context, f"{p}attention.output.dense")
        hidden = g.layer_norm(
            g.op("Add", [attended, hidden]), f"{p}attention.output.LayerNorm", shape.layer_norm_eps
        )
        expanded = g.linear(hidden, f"{p}intermediate.dense")
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [expanded, "c_half"]),
                g.op("Add", ["c_one_f", g.op("Erf", [g.op("Div", [expanded, "c_sqrt2"])])]),
            ],
        )
        output = g.linear(gelu, f"{p}output.dense")
        hidden = g.layer_norm(g.op("Add", [output, hidden]), f"{p}output.LayerNorm", shape.layer_norm_eps)

    first_token = g.op("Gather", [hidden, "c_zero"], axis=1)
    pooled = g.op("Tanh", [g.linear(first_token, "bert.pooler.dense")])
    g.nodes.append(helper.make_node("Identity", [g.linear(pooled, "classifier")], ["logits"], name="logits"))

    batch_by_sequence = ["batch_size", "sequence_length"]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, batch_by_sequence)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", shape.labels])]
    if expose_pooled:
        g.nodes.append(helper.make_node("Identity", [pooled], ["pooled"], name="pooled"))
        outputs.append(
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch_size", shape.hidden])
        )
    return g.model("bert_for_sequence_classification", inputs, outputs)
