"""Exact padded batches for int8 models: a second graph that scores every pair of a batch as it scores alone.

Dynamic int8 quantization picks one activation scale and zero point per tensor, so in a padded batch a pair's
score depends on its neighbours. This rewrites the graph the per-pair session runs (as onnxruntime
fused it, fused kernels compute slightly differently from the separate ops) so that each quantized matmul
quantizes per pair, over the pair's own positions only, with onnxruntime's own formulas:

    min, max = min(valid, 0), max(valid, 0);  scale = (max - min) / 255, or 1 when max == min
    zero point = round_half_even(clip(0 - min / scale, 0, 255));  a = saturate(round(x / scale) + zero point)
    y = float(sum((a - zero point) * (w - w_zero point))) * (scale * w_scale) + bias

The integer product runs in MatMulInteger without the A zero point (onnxruntime refuses one per row); the
zero point times the weights' column sums is then taken off in int32, exactly. The rewritten graph runs with
graph optimization off (batch_session_options) so that nothing is fused again. A graph this does not
understand is refused with ExactBatchesUnsupported, and the engine runs its pairs alone.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from reranker.onnx_wire import (
    FLOAT,
    INT32,
    UINT8,
    Graph,
    Node,
    WireFormatError,
    encode_initializer,
    int_attribute,
    ints_attribute,
    parse_model,
)

MS_DOMAIN = "com.microsoft"
# The quantized matmuls the rewrite replaces, as onnxruntime's EXTENDED level fuses quantize_dynamic's output.
DYNAMIC_QUANTIZE_MATMUL = (MS_DOMAIN, "DynamicQuantizeMatMul")
MATMUL_INTEGER_TO_FLOAT = (MS_DOMAIN, "MatMulIntegerToFloat")
DYNAMIC_QUANTIZE_LINEAR = ("", "DynamicQuantizeLinear")
# Every other op the rewritten graph may hold: the ops of the five FlashRank families' graphs as onnxruntime
# fuses them (BERT: Gelu, SkipLayerNormalization, FusedMatMul; T5: its RMS norm and tanh GELU unfused), each
# proven bit for bit in padded batches by tests/unit/test_exact_batches.py, plus ops that move or name values
# without computing any. Each computes a row of the batch from that row alone, or (attention's Softmax and
# MatMul) gives padded positions a weight of exactly zero. Any other op refuses the graph: its pairs run alone.
ROW_WISE_OPS = frozenset(
    {
        ("", op)
        for op in (
            "Add", "Cast", "Clip", "DequantizeLinear", "Div", "Gather", "LayerNormalization", "MatMul", "Mul",
            "Range", "ReduceMean", "Reshape", "Shape", "Slice", "Softmax", "Sqrt", "Sub", "Tanh", "Transpose",
            "Unsqueeze",
            "Constant", "Identity", "Squeeze",
        )
    }
    | {(MS_DOMAIN, op) for op in ("FusedMatMul", "Gelu", "SkipLayerNormalization")}
)  # fmt: skip
# DynamicQuantizeLinear's outputs, in order.
QUANTIZER_OUTPUTS = ("quantized", "scale", "zero point")
MIN_OPSET = 13  # QuantizeLinear's per-axis scale
PREFIX = "exact_batch/"


class ExactBatchesUnsupported(ValueError):
    """The model's graph cannot be rewritten into exact batches; its pairs run alone."""


def session_and_fused_graph(model: bytes, options: ort.SessionOptions) -> tuple[ort.InferenceSession, bytes]:
    """A session of ``model`` and the graph it runs, as onnxruntime fused it: the rewrite's starting point.

    The per-pair session writes its own optimized graph out (ENABLE_ALL on a CPU fuses exactly what EXTENDED
    does for these models), so that the batched graph uses the very fused kernels the pairs alone run on.
    """
    with tempfile.TemporaryDirectory(prefix="exact-batch-") as directory:
        target = Path(directory) / "fused.onnx"
        options.optimized_model_filepath = str(target)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        options.optimized_model_filepath = ""
        return session, target.read_bytes()


def batch_session_options(options: ort.SessionOptions) -> ort.SessionOptions:
    """``options`` (the per-pair session's) with graph optimization off: the rewritten graph is already fused,
    and must not be fused again (its own Mul/Add chains would be)."""
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def exact_batch_graph(model: bytes) -> bytes:
    """The batched graph of an int8 model (its ONNX bytes as FlashRank ships them); see batched_graph."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return batched_graph(session_and_fused_graph(model, options)[1])


def batched_graph(fused: bytes) -> bytes:
    """The rewritten graph of a fused model (session_and_fused_graph), or ExactBatchesUnsupported and why."""
    try:
        graph = parse_model(fused)
    except WireFormatError as exc:
        raise ExactBatchesUnsupported(f"the model is not readable: {exc}") from exc
    return _Rewrite(graph).model()


@dataclass(frozen=True)
class _Rows:
    """An activation quantized per pair: uint8 values, the scale (batch,), the shape that broadcasts a value
    per pair over the activation's rows (batch, 1[, 1]), and the zero point as int32 in that shape."""

    quantized: str
    scale: str
    row_shape: str
    zero_point: str


@dataclass
class _Rewrite:
    graph: Graph
    nodes: list[Node] = field(default_factory=list)
    initializers: list[bytes] = field(default_factory=list)
    # DynamicQuantizeLinear's outputs (quantized, scale, zero point) -> the activation quantized per row
    row_quantized: dict[str, tuple[_Rows, str]] = field(default_factory=dict)
    # Each activation quantized once, however many matmuls read it (attention's query, key and value).
    _rows: dict[str, _Rows] = field(default_factory=dict)
    _count: int = 0

    def __post_init__(self) -> None:
        self.opset = self.graph.opsets.get("", 0)
        if self.opset < MIN_OPSET:
            raise ExactBatchesUnsupported(f"opset {self.opset} is older than {MIN_OPSET}")
        for name in ("input_ids", "attention_mask"):
            if name not in self.graph.inputs:
                raise ExactBatchesUnsupported(f"the graph has no {name} input")
        ids = self.graph.inputs["input_ids"].dims
        if ids is None or len(ids) != 2 or not all(isinstance(dim, str) and dim for dim in ids):
            raise ExactBatchesUnsupported("input_ids has no named (batch, sequence) dimensions")
        self.batch_dim = ids[0]
        self.zero = self.constant("zero", np.array(0.0, np.float32))
        self.levels = self.constant("levels", np.array(255.0, np.float32))
        mask = self.op("Cast", ["attention_mask"], int_attribute("to", FLOAT))
        self.mask = self.op("Reshape", [mask, self.constant("mask_shape", np.array([0, 0, 1], np.int64))])

    def model(self) -> bytes:
        quantized = {DYNAMIC_QUANTIZE_MATMUL, MATMUL_INTEGER_TO_FLOAT}
        if not any((node.domain, node.op_type) in quantized for node in self.graph.nodes):
            raise ExactBatchesUnsupported("the graph has no dynamically quantized matmul")
        for node in self.graph.nodes:
            key = ("" if node.domain == "ai.onnx" else node.domain, node.op_type)
            if key == DYNAMIC_QUANTIZE_MATMUL:
                self.dynamic_quantize_matmul(node)
            elif key == DYNAMIC_QUANTIZE_LINEAR:
                self.dynamic_quantize_linear(node)
            elif key == MATMUL_INTEGER_TO_FLOAT:
                self.matmul_integer_to_float(node)
            elif key in ROW_WISE_OPS:
                self.nodes.append(node)
            else:
                raise ExactBatchesUnsupported(
                    f"op {node.domain or 'ai.onnx'}.{node.op_type} is not known row-wise"
                )
        # A quantizer's outputs are replaced per row: only the matmuls rewritten here may read them.
        for node in self.nodes:
            stale = set(node.inputs) & self.row_quantized.keys()
            if stale:
                raise ExactBatchesUnsupported(
                    f"{node.op_type} {node.name} reads the quantized {sorted(stale)}"
                )
        return self.graph.to_bytes(self.nodes, self.initializers)

    # --- building blocks -------------------------------------------------------------------------

    def name(self, what: str) -> str:
        self._count += 1
        return f"{PREFIX}{what}_{self._count}"

    def constant(self, what: str, value: np.ndarray) -> str:
        name = self.name(what)
        self.initializers.append(encode_initializer(name, value))
        return name

    def op(self, op_type: str, inputs: list[str], attributes: bytes = b"") -> str:
        output = self.name(op_type)
        self.nodes.append(Node(op_type, tuple(inputs), (output,), name=output, attributes=attributes))
        return output

    def reduce(self, op_type: str, x: str, axes: list[int], *, keep: bool) -> str:
        keepdims = int_attribute("keepdims", int(keep))
        # Axes are an attribute up to opset 17, an input from 18 on.
        if self.opset < 18:
            return self.op(op_type, [x], ints_attribute("axes", axes) + keepdims)
        return self.op(op_type, [x, self.constant("axes", np.array(axes, np.int64))], keepdims)

    # --- the rewrite ---------------------------------------------------------------------------------

    def quantize_rows(self, x: str) -> _Rows:
        """x quantized per pair over its valid positions."""
        if x in self._rows:
            return self._rows[x]
        dims = self.graph.shape_of(x)
        if dims is None or len(dims) not in (2, 3) or dims[0] != self.batch_dim:
            raise ExactBatchesUnsupported(f"quantized input {x} is not (batch, ...) shaped: {dims}")
        if len(dims) == 2:
            low = self.reduce("ReduceMin", x, [1], keep=False)
            high = self.reduce("ReduceMax", x, [1], keep=False)
        else:
            # onnxruntime's shape inference loses the sequence dimension's name (Range): any unnamed size.
            if not isinstance(dims[1], str):
                raise ExactBatchesUnsupported(f"quantized input {x} is not (batch, sequence, ...) shaped")
            # Each position's min and max, then the pair's over its valid positions: the padding's are
            # multiplied by 0 (Where is several times slower here), and 0 the range always includes.
            # (Padded positions are quantized with the pair's scale, saturating if they must: no valid
            # position reads them.)
            low = self.reduce("ReduceMin", x, [-1], keep=True)
            high = self.reduce("ReduceMax", x, [-1], keep=True)
            low = self.reduce("ReduceMin", self.op("Mul", [low, self.mask]), [1, 2], keep=False)
            high = self.reduce("ReduceMax", self.op("Mul", [high, self.mask]), [1, 2], keep=False)
        # From here on one value per pair (batch,).
        low, high = self.op("Min", [low, self.zero]), self.op("Max", [high, self.zero])
        step = self.op("Div", [self.op("Sub", [high, low]), self.levels])
        # 1 where the range is empty (step is 0 there); Add is several times faster than Where here.
        empty = self.op("Cast", [self.op("Equal", [high, low])], int_attribute("to", FLOAT))
        scale = self.op("Add", [step, empty])
        # onnxruntime clips 0 - min / scale to [0, 255] before rounding; it is in [0, 255] but for a few
        # ulps above 255 (min <= 0 <= max), which round to 255 as well: no Clip needed.
        zero_point = self.op(
            "Cast",
            [self.op("Round", [self.op("Sub", [self.zero, self.op("Div", [low, scale])])])],
            int_attribute("to", UINT8),
        )
        quantized = self.op("QuantizeLinear", [x, scale, zero_point], int_attribute("axis", 0))
        row_shape = self.constant("row_shape", np.array([-1] + [1] * (len(dims) - 1), np.int64))
        zero_point_rows = self.op(
            "Reshape", [self.op("Cast", [zero_point], int_attribute("to", INT32)), row_shape]
        )
        rows = _Rows(quantized, scale, row_shape, zero_point_rows)
        self._rows[x] = rows
        return rows

    def integer_matmul(
        self, rows: _Rows, *, weights: str, weight_scale: str, weight_zero_point: str, bias: str,
        output: str,
    ) -> None:  # fmt: skip
        """output = float(sum((a - zp) (w - w_zp))) * (scale * w_scale) + bias, as onnxruntime's fused
        kernel computes it, from ``rows`` = quantize_rows(a); the per-row zero point is taken off in int32
        through the weights' column sums."""
        initializer = self.graph.initializers.get(weights)
        if initializer is None or len(initializer.dims) != 2:
            raise ExactBatchesUnsupported(f"weights {weights} are not a constant matrix")
        try:
            matrix = initializer.array()
            sums = matrix.sum(axis=0, dtype=np.int64)  # of (w - w_zp): w's sums less rows x w_zp
            if weight_zero_point:
                offsets = self.graph.initializers[weight_zero_point].array().astype(np.int64)
                sums = sums - matrix.shape[0] * offsets
        except (KeyError, WireFormatError, ValueError) as exc:
            raise ExactBatchesUnsupported(f"weights {weights} are not readable: {exc}") from exc
        column_sums = self.constant("column_sums", sums.astype(np.int32))
        inputs = [rows.quantized, weights] + (["", weight_zero_point] if weight_zero_point else [])
        product = self.op("MatMulInteger", inputs)
        exact = self.op("Sub", [product, self.op("Mul", [rows.zero_point, column_sums])])
        if self.graph.shape_of(weight_scale) in ((), (1,)):
            # float(exact) * (scale * w_scale) in one pass: DequantizeLinear along the batch axis.
            multiplier = self.op("Mul", [rows.scale, weight_scale])
            scaled = self.op("DequantizeLinear", [exact, multiplier], int_attribute("axis", 0))
        else:  # a scale per weight column
            multiplier = self.op("Mul", [self.op("Reshape", [rows.scale, rows.row_shape]), weight_scale])
            scaled = self.op("Mul", [self.op("Cast", [exact], int_attribute("to", FLOAT)), multiplier])
        if bias:
            self.nodes.append(Node("Add", (scaled, bias), (output,), name=self.name("Add")))
        else:
            self.nodes.append(Node("Identity", (scaled,), (output,), name=self.name("Identity")))

    def dynamic_quantize_matmul(self, node: Node) -> None:
        a, weights, weight_scale, weight_zero_point, bias = [*node.inputs, *[""] * 5][:5]
        self.integer_matmul(
            self.quantize_rows(a), weights=weights, weight_scale=weight_scale,
            weight_zero_point=weight_zero_point, bias=bias, output=node.outputs[0],
        )  # fmt: skip

    def dynamic_quantize_linear(self, node: Node) -> None:
        rows = self.quantize_rows(node.inputs[0])
        for original, role in zip(node.outputs, QUANTIZER_OUTPUTS, strict=False):
            self.row_quantized[original] = rows, role

    def matmul_integer_to_float(self, node: Node) -> None:
        padded = [*node.inputs, *[""] * 7]
        a, weights, scale_2, scale_3, a_zero_point, weight_zero_point, bias = padded[:7]
        # onnxruntime's fusion may swap the two scales; the activation's is the one DynamicQuantizeLinear made.
        a_scale, weight_scale = (scale_2, scale_3) if scale_2 in self.row_quantized else (scale_3, scale_2)
        quantizer = {self.row_quantized.get(name, (None, ""))[0] for name in (a, a_scale, a_zero_point)}
        roles = tuple(self.row_quantized.get(name, (None, ""))[1] for name in (a, a_scale, a_zero_point))
        rows = quantizer.pop() if len(quantizer) == 1 else None
        if rows is None or roles != QUANTIZER_OUTPUTS:
            raise ExactBatchesUnsupported(f"MatMulIntegerToFloat {node.name} is not fed by one quantizer")
        self.integer_matmul(
            rows, weights=weights, weight_scale=weight_scale, weight_zero_point=weight_zero_point, bias=bias,
            output=node.outputs[0],
        )  # fmt: skip
