"""Chakra ET protobuf schema (mlcommons/chakra ``schema/protobuf/et_def.proto``), built as
descriptors at run time with the ``protobuf`` package (optional extra ``chakra``), so no
generated code has to match the installed protobuf version.

Only the messages and fields clustersim reads or writes are declared (field numbers as in
et_def.proto); fields of other versions of the schema are kept by protobuf as unknown
fields and ignored.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

from hw_models.errors import ClusterSimError

PACKAGE = "ChakraProtoMsg"
NODE_TYPES = ("INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE", "COMP_NODE",
              "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE", "STORAGE_NODE", "BATCH_NODE",
              "CHECKPOINT_NODE")
COMM_TYPES = ("ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER", "BROADCAST",
              "ALL_TO_ALL", "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK", "BARRIER")
# AttributeProto's ``value`` oneof: (field name, number, scalar type or list message).
_ATTR_VALUES = (("double_val", 3, "double"), ("float_val", 5, "float"), ("int32_val", 7, "int32"),
                ("int64_val", 9, "int64"), ("int64_list", 10, "Int64List"),
                ("uint32_val", 11, "uint32"), ("uint64_val", 13, "uint64"),
                ("uint64_list", 14, "Uint64List"), ("sint32_val", 15, "sint32"),
                ("sint64_val", 17, "sint64"), ("bool_val", 27, "bool"),
                ("string_val", 29, "string"), ("string_list", 30, "StringList"))


def _require():
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise ClusterSimError("Chakra ET needs the protobuf package: pip install "
                              "'clustersim[chakra]' (or pip install protobuf)") from None
    return descriptor_pb2, descriptor_pool, message_factory


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """Message classes GlobalMetadata, Node, AttributeProto, IOInfo and the list types."""
    pb2, pool_mod, factory = _require()
    F = pb2.FieldDescriptorProto
    fd = pb2.FileDescriptorProto(name="clustersim_chakra_et_def.proto", package=PACKAGE,
                                 syntax="proto3")

    def msg(name, fields, oneof=None):
        m = fd.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for fname, num, ftype, label, in_oneof in fields:
            f = m.field.add(name=fname, number=num, label=label)
            if ftype in _SCALARS:
                f.type = _SCALARS[ftype](F)
            else:
                f.type = F.TYPE_ENUM if ftype in ("NodeType",) else F.TYPE_MESSAGE
                f.type_name = f".{PACKAGE}.{ftype}"
            if in_oneof:
                f.oneof_index = 0
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    for lst, t in (("Int64List", "int64"), ("Uint64List", "uint64"), ("StringList", "string")):
        msg(lst, [("values", 1, t, rep, False)])
    msg("AttributeProto", [("name", 1, "string", opt, False), ("doc_string", 2, "string", opt,
                                                                 False)]
        + [(n, num, t, opt, True) for n, num, t in _ATTR_VALUES], oneof="value")
    msg("GlobalMetadata", [("version", 1, "string", opt, False),
                           ("attr", 2, "AttributeProto", rep, False)])
    msg("IOInfo", [("values", 1, "string", opt, False), ("shapes", 2, "string", opt, False),
                   ("types", 3, "string", opt, False)])
    enum = fd.enum_type.add(name="NodeType")
    for i, n in enumerate(NODE_TYPES):
        enum.value.add(name=n, number=i)
    msg("Node", [("id", 1, "uint64", opt, False), ("name", 2, "string", opt, False),
                 ("type", 3, "NodeType", opt, False), ("ctrl_deps", 4, "uint64", rep, False),
                 ("data_deps", 5, "uint64", rep, False),
                 ("start_time_micros", 6, "uint64", opt, False),
                 ("duration_micros", 7, "uint64", opt, False), ("inputs", 8, "IOInfo", opt, False),
                 ("outputs", 9, "IOInfo", opt, False), ("attr", 10, "AttributeProto", rep, False)])
    pool = pool_mod.DescriptorPool()
    pool.Add(fd)
    get = factory.GetMessageClass
    names = ("GlobalMetadata", "Node", "AttributeProto", "Int64List", "Uint64List", "StringList")
    return SimpleNamespace(**{n: get(pool.FindMessageTypeByName(f"{PACKAGE}.{n}"))
                              for n in names})


_SCALARS = {
    "double": lambda F: F.TYPE_DOUBLE, "float": lambda F: F.TYPE_FLOAT,
    "int32": lambda F: F.TYPE_INT32, "int64": lambda F: F.TYPE_INT64,
    "uint32": lambda F: F.TYPE_UINT32, "uint64": lambda F: F.TYPE_UINT64,
    "sint32": lambda F: F.TYPE_SINT32, "sint64": lambda F: F.TYPE_SINT64,
    "bool": lambda F: F.TYPE_BOOL, "string": lambda F: F.TYPE_STRING,
}


def decode_error() -> type[Exception]:
    from google.protobuf.message import DecodeError
    return DecodeError


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); raises ValueError on a truncated or over-long varint."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated length prefix")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
