"""An ONNX graph of a T5 encoder with a scoring head (rank-T5-flan style), built from numpy weights (no torch).

T5's encoder, as flan-T5 has it: shared embeddings, RMS layer norms without bias, no attention scaling,
a relative position bias (bidirectional buckets) computed by the first layer and shared by all, gated-GELU
feed-forward blocks. The head reads the first token's final hidden state (RankT5's encoder ranker). The graph
declares only input_ids and attention_mask, as FlashRank's rank-T5-flan file does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from tools.fixture_model.bert_graph import GraphBuilder


@dataclass(frozen=True)
class T5Shape:
    vocab_size: int = 32128
    d_model: int = 768
    layers: int = 12
    heads: int = 12
    d_kv: int = 64
    d_ff: int = 2048
    buckets: int = 32
    max_distance: int = 128
    labels: int = 1
    layer_norm_eps: float = 1e-6

    @property
    def hidden(self) -> int:  # the width the head reads, named as BertShape names it
        return self.d_model


def random_weights(shape: T5Shape, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d, inner, f = shape.d_model, shape.heads * shape.d_kv, shape.d_ff

    def normal(*dims: int, std: float) -> np.ndarray:
        return rng.normal(0.0, std, size=dims).astype(np.float32)

    weights = {"shared.weight": normal(shape.vocab_size, d, std=1.0)}
    for layer in range(shape.layers):
        p = f"encoder.block.{layer}."
        weights[f"{p}layer.0.layer_norm.weight"] = np.ones(d, np.float32)
        # Wider query/key than T5's init so that attention is not uniform in a random model.
        weights[f"{p}layer.0.SelfAttention.q.weight"] = normal(d, inner, std=0.6 / math.sqrt(d))
        weights[f"{p}layer.0.SelfAttention.k.weight"] = normal(d, inner, std=0.6 / math.sqrt(d))
        weights[f"{p}layer.0.SelfAttention.v.weight"] = normal(d, inner, std=1.0 / math.sqrt(d))
        weights[f"{p}layer.0.SelfAttention.o.weight"] = normal(inner, d, std=0.5 / math.sqrt(inner))
        if layer == 0:
            weights[f"{p}layer.0.SelfAttention.relative_attention_bias.weight"] = normal(
                shape.buckets, shape.heads, std=1.0
            )
        weights[f"{p}layer.1.layer_norm.weight"] = np.ones(d, np.float32)
        weights[f"{p}layer.1.DenseReluDense.wi_0.weight"] = normal(d, f, std=1.0 / math.sqrt(d))
        weights[f"{p}layer.1.DenseReluDense.wi_1.weight"] = normal(d, f, std=1.0 / math.sqrt(d))
        weights[f"{p}layer.1.DenseReluDense.wo.weight"] = normal(f, d, std=0.5 / math.sqrt(f))
    weights["encoder.final_layer_norm.weight"] = np.ones(d, np.float32)
    weights["classifier.weight"] = normal(d, shape.labels, std=0.02)
    weights["classifier.bias"] = np.zeros(shape.labels, np.float32)
    return weights


def relative_buckets(shape: T5Shape) -> np.ndarray:
    """T5's bidirectional bucket of each relative position -max_distance..max_distance (beyond: saturated)."""
    relative = np.arange(-shape.max_distance, shape.max_distance + 1)
    half = shape.buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (
            np.log(np.maximum(distance, 1) / exact) / math.log(shape.max_distance / exact) * (half - exact)
        ).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(distance < exact, distance, large)


class _Graph(GraphBuilder):
    """The BERT fixtures' graph builder plus T5's RMS norm and tanh GELU."""

    def rms_norm(self, x: str, weight: str) -> str:
        variance = self.op("ReduceMean", [self.op("Mul", [x, x])], axes=[-1], keepdims=1)
        scale = self.op("Sqrt", [self.op("Add", [variance, "c_eps"])])
        return self.op("Mul", [self.op("Div", [x, scale]), weight])

    def gelu_new(self, x: str) -> str:
        cube = self.op("Mul", [self.op("Mul", [x, x]), x])
        inner = self.op("Mul", [self.op("Add", [x, self.op("Mul", [cube, "c_gelu_cube"])]), "c_gelu_scale"])
        return self.op(
            "Mul", [self.op("Mul", [x, "c_half"]), self.op("Add", ["c_one_f", self.op("Tanh", [inner])])]
        )


def build_model(
    shape: T5Shape, weights: dict[str, np.ndarray], *, expose_pooled: bool = False
) -> onnx.ModelProto:
    g = _Graph()
    for name, value in weights.items():
        if "relative_attention_bias" not in name:
            g.constant(name, value)
    i64 = np.int64
    # The position bias of every relative position the buckets distinguish, looked up per (query, key) pair.
    bias_table = weights["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][
        relative_buckets(shape)
    ]
    g.constant("relative_position_bias_table", bias_table.astype(np.float32))
    g.constant("c_zero", np.array(0, i64))
    g.constant("c_one", np.array(1, i64))
    g.constant("c_max_distance", np.array(shape.max_distance, i64))
    g.constant("c_min_distance", np.array(-shape.max_distance, i64))
    g.constant("c_one_f", np.array(1.0, np.float32))
    g.constant("c_half", np.array(0.5, np.float32))
    g.constant("c_eps", np.array(shape.layer_norm_eps, np.float32))
    g.constant("c_gelu_cube", np.array(0.044715, np.float32))
    g.constant("c_gelu_scale", np.array(math.sqrt(2.0 / math.pi), np.float32))
    g.constant("c_mask_fill", np.array(-1e9, np.float32))
    g.constant("c_split_heads", np.array([0, 0, shape.heads, shape.d_kv], i64))
    g.constant("c_merge_heads", np.array([0, 0, shape.heads * shape.d_kv], i64))
    g.constant("c_mask_axes", np.array([1, 2], i64))
    g.constant("c_batch_axis", np.array([0], i64))
    g.constant("c_row_axis", np.array([1], i64))

    sequence_length = g.op("Gather", [g.op("Shape", ["input_ids"]), "c_one"], axis=0)
    positions = g.op("Range", ["c_zero", sequence_length, "c_one"])
    relative = g.op(
        "Sub", [g.op("Unsqueeze", [positions, "c_batch_axis"]), g.op("Unsqueeze", [positions, "c_row_axis"])]
    )
    clipped = g.op("Clip", [relative, "c_min_distance", "c_max_distance"])
    table_index = g.op("Add", [clipped, "c_max_distance"])
    position_bias = g.op(
        "Unsqueeze",
        [
            g.op(
                "Transpose", [g.op("Gather", ["relative_position_bias_table", table_index])], perm=[2, 0, 1]
            ),
            "c_batch_axis",
        ],
    )
    mask = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT), "c_mask_axes"])
    bias = g.op("Add", [position_bias, g.op("Mul", [g.op("Sub", ["c_one_f", mask]), "c_mask_fill"])])

    hidden = g.op("Gather", ["shared.weight", "input_ids"])
    for layer in range(shape.layers):
        p = f"encoder.block.{layer}.layer."
        normed = g.rms_norm(hidden, f"{p}0.layer_norm.weight")

        def heads(name: str, perm: list[int], source: str = normed, p: str = p) -> str:
            projected = g.op("MatMul", [source, f"{p}0.SelfAttention.{name}.weight"])
            return g.op("Transpose", [g.op("Reshape", [projected, "c_split_heads"])], perm=perm)

        query, key, value = heads("q", [0, 2, 1, 3]), heads("k", [0, 2, 3, 1]), heads("v", [0, 2, 1, 3])
        scores = g.op("Add", [g.op("MatMul", [query, key]), bias])  # T5 does not scale by sqrt(d_kv)
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), value])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), "c_merge_heads"])
        hidden = g.op("Add", [hidden, g.op("MatMul", [context, f"{p}0.SelfAttention.o.weight"])])
        normed = g.rms_norm(hidden, f"{p}1.layer_norm.weight")
        gate = g.gelu_new(g.op("MatMul", [normed, f"{p}1.DenseReluDense.wi_0.weight"]))
        linear = g.op("MatMul", [normed, f"{p}1.DenseReluDense.wi_1.weight"])
        feed_forward = g.op("MatMul", [g.op("Mul", [gate, linear]), f"{p}1.DenseReluDense.wo.weight"])
        hidden = g.op("Add", [hidden, feed_forward])
    hidden = g.rms_norm(hidden, "encoder.final_layer_norm.weight")
    pooled = g.op("Gather", [hidden, "c_zero"], axis=1)
    logits = g.op("Add", [g.op("MatMul", [pooled, "classifier.weight"]), "classifier.bias"])
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch_size", "sequence_length"])
        for name in ("input_ids", "attention_mask")
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", shape.labels])]
    if expose_pooled:
        g.nodes.append(helper.make_node("Identity", [pooled], ["pooled"], name="pooled"))
        outputs.append(
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch_size", shape.d_model])
        )
    return g.model("t5_encoder_ranker", inputs, outputs)
