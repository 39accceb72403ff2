"""Just enough of the protobuf wire format to read and edit an ONNX graph without the onnx package.

The Lambda ships onnxruntime, tokenizers and numpy only (no onnx, no protobuf): this reads a ModelProto's
opset imports and graph (nodes, initializers, inputs, value infos) and writes the graph back with nodes
replaced and initializers added, every other field kept byte for byte. Field numbers are onnx.proto's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
UINT64_MASK = (1 << 64) - 1

# onnx.proto field numbers
MODEL_OPSET_IMPORT, MODEL_GRAPH = 8, 7
OPSET_DOMAIN, OPSET_VERSION = 1, 2
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_VALUE_INFO = 1, 5, 11, 13
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE, NODE_DOMAIN = 1, 2, 3, 4, 5, 7
ATTRIBUTE_NAME, ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS, ATTRIBUTE_TYPE = 1, 2, 3, 8, 20
ATTRIBUTE_TYPE_FLOAT, ATTRIBUTE_TYPE_INT, ATTRIBUTE_TYPE_INTS = 1, 2, 7
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DATA_LOCATION = 1, 2, 8, 9, 14
TENSOR_FLOAT_DATA, TENSOR_INT32_DATA, TENSOR_INT64_DATA = 4, 5, 7
VALUE_INFO_NAME, VALUE_INFO_TYPE = 1, 2
TYPE_TENSOR, TENSOR_TYPE_ELEM_TYPE, TENSOR_TYPE_SHAPE, SHAPE_DIM = 1, 1, 2, 1
DIM_VALUE, DIM_PARAM = 1, 2

# TensorProto.DataType
FLOAT, UINT8, INT8, INT32, INT64 = 1, 2, 3, 6, 7
NUMPY_TYPES = {FLOAT: np.float32, UINT8: np.uint8, INT8: np.int8, INT32: np.int32, INT64: np.int64}


class WireFormatError(ValueError):
    """The bytes are not an ONNX model this reader understands."""


Buffer = bytes | memoryview  # memoryviews: the weights are sliced out of the model, never copied


def _read_varint(data: Buffer, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise WireFormatError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise WireFormatError("varint longer than 64 bits")


def fields(data: Buffer) -> Iterator[tuple[int, int, int | Buffer, Buffer]]:
    """Each field of one message: (number, wire type, value, the field's own bytes)."""
    position = 0
    while position < len(data):
        start = position
        key, position = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        value: int | Buffer
        if wire_type == VARINT:
            value, position = _read_varint(data, position)
        elif wire_type == LENGTH_DELIMITED:
            length, position = _read_varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise WireFormatError("truncated field")
            position += length
        elif wire_type == FIXED32:
            value, position = data[position : position + 4], position + 4
        elif wire_type == FIXED64:
            value, position = data[position : position + 8], position + 8
        else:
            raise WireFormatError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value, data[start:position]


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(value: int | Buffer) -> list[int]:
    """A repeated int64 field's values, packed or not."""
    if isinstance(value, int):
        return [_signed(value)]
    found, position = [], 0
    while position < len(value):
        number, position = _read_varint(value, position)
        found.append(_signed(number))
    return found


def _text(value: int | Buffer) -> str:
    return bytes(_bytes(value)).decode("utf-8")


def _bytes(value: int | Buffer) -> Buffer:
    if isinstance(value, int):
        raise WireFormatError("expected a length-delimited field")
    return value


def encode_varint(value: int) -> bytes:
    if 0 <= value < 0x80:  # field keys, short lengths, small ints: most of what a graph's nodes hold
        return _ONE_BYTE[value]
    value &= UINT64_MASK
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


def encode_field(number: int, value: int | Buffer | str) -> bytes:
    """One field: an int as a varint, bytes or str length-delimited."""
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    payload = value.encode("utf-8") if isinstance(value, str) else value
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(payload)) + payload


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    domain: str = ""
    name: str = ""
    attributes: bytes = b""  # encoded attribute fields of a node built here (int_attribute, ints_attribute)
    encoded: Buffer = b""  # the node's own bytes, kept as read; empty for a node built here

    def to_bytes(self) -> Buffer:
        if self.encoded:
            return self.encoded
        parts = [encode_field(NODE_INPUT, name) for name in self.inputs]
        parts += [encode_field(NODE_OUTPUT, name) for name in self.outputs]
        parts += [encode_field(NODE_NAME, self.name), encode_field(NODE_OP_TYPE, self.op_type)]
        if self.domain:
            parts.append(encode_field(NODE_DOMAIN, self.domain))
        return b"".join(parts) + self.attributes


def parse_node(data: Buffer) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = domain = name = ""
    for number, _, value, _ in fields(data):
        if number == NODE_INPUT:
            inputs.append(_text(value))
        elif number == NODE_OUTPUT:
            outputs.append(_text(value))
        elif number == NODE_OP_TYPE:
            op_type = _text(value)
        elif number == NODE_DOMAIN:
            domain = _text(value)
        elif number == NODE_NAME:
            name = _text(value)
    return Node(op_type, tuple(inputs), tuple(outputs), domain, name, encoded=data)


def int_attribute(name: str, value: int) -> bytes:
    body = encode_field(ATTRIBUTE_NAME, name) + encode_field(ATTRIBUTE_INT, value)
    return encode_field(NODE_ATTRIBUTE, body + encode_field(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INT))


def ints_attribute(name: str, values: Sequence[int]) -> bytes:
    body = encode_field(ATTRIBUTE_NAME, name) + b"".join(encode_field(ATTRIBUTE_INTS, v) for v in values)
    return encode_field(NODE_ATTRIBUTE, body + encode_field(ATTRIBUTE_TYPE, ATTRIBUTE_TYPE_INTS))


@dataclass(frozen=True)
class Initializer:
    name: str
    data_type: int
    dims: tuple[int, ...]
    raw_data: Buffer | None  # None when the values are in typed fields (``values``) or external data
    values: tuple[int | float, ...] = ()

    def array(self) -> np.ndarray:
        if self.data_type not in NUMPY_TYPES:
            raise WireFormatError(f"initializer {self.name} has data type {self.data_type}")
        dtype = np.dtype(NUMPY_TYPES[self.data_type]).newbyteorder("<")
        if self.raw_data is not None:
            return np.frombuffer(self.raw_data, dtype=dtype).reshape(self.dims)
        if len(self.values) != int(np.prod(self.dims)):
            raise WireFormatError(f"initializer {self.name} has no values stored in the model")
        return np.array(self.values, dtype=dtype).reshape(self.dims)


def parse_initializer(data: Buffer) -> Initializer:
    name, data_type, dims, external = "", 0, [], False
    raw: Buffer | None = None
    values: list[int | float] = []
    for number, _, value, _ in fields(data):
        if number == TENSOR_NAME:
            name = _text(value)
        elif number == TENSOR_DATA_TYPE and isinstance(value, int):
            data_type = value
        elif number == TENSOR_DIMS:
            dims += _ints(value)
        elif number == TENSOR_RAW_DATA:
            raw = _bytes(value)
        elif number == TENSOR_DATA_LOCATION:
            external = value == 1
        elif number in (TENSOR_INT32_DATA, TENSOR_INT64_DATA):
            values += _ints(value)  # int8 and uint8 are stored in int32_data
        elif number == TENSOR_FLOAT_DATA:
            values += np.frombuffer(bytes(_bytes(value)), dtype="<f4").tolist()  # packed or one fixed32
    if external:
        raise WireFormatError(f"initializer {name} is stored outside the model")
    return Initializer(name, data_type, tuple(dims), raw, tuple(values))


def encode_initializer(name: str, array: np.ndarray) -> bytes:
    data_type = next(code for code, dtype in NUMPY_TYPES.items() if array.dtype == dtype)
    parts = [encode_field(TENSOR_DIMS, dim) for dim in array.shape]
    parts += [encode_field(TENSOR_DATA_TYPE, data_type), encode_field(TENSOR_NAME, name)]
    little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    parts.append(encode_field(TENSOR_RAW_DATA, little_endian.tobytes()))
    return encode_field(GRAPH_INITIALIZER, b"".join(parts))


@dataclass(frozen=True)
class ValueInfo:
    name: str
    elem_type: int
    # None: shape unknown; a str is a symbolic dimension, "" an unnamed one
    dims: tuple[int | str, ...] | None


def parse_value_info(data: Buffer) -> ValueInfo:
    name, elem_type = "", 0
    dims: tuple[int | str, ...] | None = None
    for number, _, value, _ in fields(data):
        if number == VALUE_INFO_NAME:
            name = _text(value)
        elif number == VALUE_INFO_TYPE:
            for type_number, _, tensor, _ in fields(_bytes(value)):
                if type_number != TYPE_TENSOR:
                    continue
                for tensor_number, _, tensor_value, _ in fields(_bytes(tensor)):
                    if tensor_number == TENSOR_TYPE_ELEM_TYPE and isinstance(tensor_value, int):
                        elem_type = tensor_value
                    elif tensor_number == TENSOR_TYPE_SHAPE:
                        dims = tuple(_dimension(_bytes(dim)) for _, _, dim, _ in fields(_bytes(tensor_value)))
    return ValueInfo(name, elem_type, dims)


def _value_info_name(data: Buffer) -> str:
    for number, _, value, _ in fields(data):
        if number == VALUE_INFO_NAME:
            return _text(value)
    return ""


def _dimension(data: Buffer) -> int | str:
    for number, _, value, _ in fields(data):
        if number == DIM_VALUE and isinstance(value, int):
            return _signed(value)
        if number == DIM_PARAM:
            return _text(value)
    return ""


@dataclass
class Graph:
    """An ONNX model's graph, as read: its nodes in order, initializers, inputs and value infos by name."""

    opsets: dict[str, int]
    nodes: list[Node]
    initializers: dict[str, Initializer]
    inputs: dict[str, ValueInfo]
    value_infos: dict[str, Buffer]  # each tensor's ValueInfoProto, read when shape_of asks for it
    _model_fields: list[tuple[int, Buffer]] = field(repr=False)
    _graph_fields: list[tuple[int, Buffer]] = field(repr=False)

    def shape_of(self, name: str) -> tuple[int | str, ...] | None:
        if name in self.initializers:
            return self.initializers[name].dims
        encoded = self.value_infos.get(name)
        info = parse_value_info(encoded) if encoded is not None else self.inputs.get(name)
        return None if info is None else info.dims

    def to_bytes(self, nodes: Sequence[Node], new_initializers: Sequence[bytes]) -> bytes:
        """The model with this graph's nodes replaced by ``nodes`` and ``new_initializers`` added."""
        graph: list[Buffer] = [encode_field(GRAPH_NODE, node.to_bytes()) for node in nodes]
        graph += [encoded for number, encoded in self._graph_fields if number != GRAPH_NODE]
        graph += new_initializers
        graph_length = sum(len(part) for part in graph)
        model: list[Buffer] = []
        for number, encoded in self._model_fields:
            if number == MODEL_GRAPH:
                model += [
                    encode_varint(MODEL_GRAPH << 3 | LENGTH_DELIMITED),
                    encode_varint(graph_length),
                    *graph,
                ]
            else:
                model.append(encoded)
        return b"".join(model)


def parse_model(data: bytes) -> Graph:
    model_fields: list[tuple[int, Buffer]] = []
    graph_bytes: Buffer | None = None
    opsets: dict[str, int] = {}
    for number, _, value, encoded in fields(memoryview(data)):
        model_fields.append((number, encoded))
        if number == MODEL_GRAPH:
            graph_bytes = _bytes(value)
        elif number == MODEL_OPSET_IMPORT:
            domain, version = "", 0
            for opset_number, _, opset_value, _ in fields(_bytes(value)):
                if opset_number == OPSET_DOMAIN:
                    domain = _text(opset_value)
                elif opset_number == OPSET_VERSION and isinstance(opset_value, int):
                    version = opset_value
            opsets["" if domain == "ai.onnx" else domain] = version
    if graph_bytes is None:
        raise WireFormatError("the model has no graph")
    graph_fields: list[tuple[int, Buffer]] = []
    nodes: list[Node] = []
    initializers: dict[str, Initializer] = {}
    inputs: dict[str, ValueInfo] = {}
    value_infos: dict[str, Buffer] = {}
    for number, _, value, encoded in fields(graph_bytes):
        graph_fields.append((number, encoded))
        if number == GRAPH_NODE:
            nodes.append(parse_node(_bytes(value)))
        elif number == GRAPH_INITIALIZER:
            initializer = parse_initializer(_bytes(value))
            initializers[initializer.name] = initializer
        elif number == GRAPH_INPUT:
            info = parse_value_info(_bytes(value))
            inputs[info.name] = info
        elif number == GRAPH_VALUE_INFO:
            value_infos[_value_info_name(_bytes(value))] = _bytes(value)
    return Graph(opsets, nodes, initializers, inputs, value_infos, model_fields, graph_fields)
