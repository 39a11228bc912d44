"""Envelopes to bytes and back, without pickle.

A frame is::

    b"AML1" | u32 header length | header (msgpack) | padding | array bytes ...

The header holds the message kind, tag, sender and receiver addresses, correlation
id, one descriptor per numpy array (dtype, shape, offset) and the message fields,
where arrays are stand-ins pointing at their descriptor. Array bytes follow the
header, each aligned to 16 bytes, and decode as ``np.frombuffer`` views of the
received buffer: no copy. A frame that is truncated, oversized, names an unknown
tag, or whose fields do not match the message class's annotations raises
:class:`CodecError`; nothing on the wire can make the receiver import or call code.

Decoding is meant for frames from anyone, so its cost is bounded by the frame, never
by what the frame claims:

- :func:`decode` raises nothing but :class:`CodecError`, whatever the bytes.
- Messages (and addresses) nest at most :data:`MAX_NESTING` deep, checked before the
  inner one is unpacked; containers nest at most 1023 deep inside one field block
  (msgpack's own parser, which is iterative, refuses deeper).
- Every list, map, nested message, address and array the frame makes is charged
  against a budget of :data:`BUDGET_PER_BYTE` bytes of Python objects per byte of
  frame (plus :data:`BUDGET_FLOOR`, at most :data:`BUDGET_CAP`), and decoding stops
  (``over_budget``) as soon as it is spent. Scalars are not charged one by one
  (msgpack builds them in C without a hook), so a frame of short strings can cost
  more than the budget: over the worst constructions we know (``tests/test_codec.py``)
  the peak allocation of :func:`decode` stays under :data:`PEAK_PER_BYTE` (40) times
  the frame plus 256 KiB (measured: ~32 times), and its time is linear in the frame.
"""

from __future__ import annotations

import enum
import re
import struct
import sys
from typing import Any

import attrs
import msgpack
import numpy as np

from .errors import CodecError
from .messages import ActorRef, field_schema, is_message, message_class, message_tag

__all__ = [
    "ASK",
    "BUDGET_CAP",
    "BUDGET_FLOOR",
    "BUDGET_PER_BYTE",
    "FAIL",
    "MAX_NESTING",
    "PEAK_PER_BYTE",
    "REASONS",
    "REPLY",
    "TELL",
    "Envelope",
    "Frame",
    "decode",
    "encode",
]

TELL, ASK, REPLY, FAIL = 0, 1, 2, 3
_KINDS = frozenset((TELL, ASK, REPLY, FAIL))

MAGIC = b"AML1"
_PREFIX = struct.Struct("<4sI")
_ALIGN = 16
# Only plain numeric and boolean dtypes travel: an object dtype would be pickle again.
_ARRAY_KINDS = frozenset("biufc")
_MAX_DIMS = 32
_DTYPE_STR = re.compile(r"[<>|=][biufc][0-9]{1,2}")

_EXT_ARRAY, _EXT_MESSAGE, _EXT_REF = 1, 2, 3
_U32 = struct.Struct("<I")

#: How deep messages and addresses may nest inside one another. Each level is one
#: more msgpack parser on the C stack (~33 KB): 200 levels crashed the process.
MAX_NESTING = 16
#: Bytes of Python objects (lists, maps, messages, addresses, arrays) a frame may
#: make per byte of frame. An honest frame makes at most ~9 (a list of small ints:
#: 8 bytes a pointer for a 1-byte int); an empty-list bomb made ~75.
BUDGET_PER_BYTE = 16
#: What any frame may spend, however small.
BUDGET_FLOOR = 64 * 1024
#: What any frame may spend, however large: bulk data travels as arrays, which cost
#: nothing here. It also bounds the time one frame can take (~0.5 s of an empty-list
#: bomb on a 2020 laptop core), so a node never misses a heartbeat over one frame.
BUDGET_CAP = 32 * 1024 * 1024
#: The documented (and tested) bound on decode's peak allocation per byte of frame,
#: scalars included.
PEAK_PER_BYTE = 40

#: Every reason decode gives for refusing a frame (``CodecError.reason``).
REASONS = (
    "oversized",
    "truncated",
    "bad_magic",
    "bad_header",
    "unknown_tag",
    "bad_field",
    "bad_array",
    "too_deep",
    "over_budget",
    "bad_frame",
)
# Headers up to this size are decoded without charging lists and maps one by one.
_UNCOUNTED_HEADER = BUDGET_FLOOR // 128
# What a charged object costs, as sys.getsizeof reports it (64-bit CPython).
_LIST_COST, _ITEM_COST, _OBJECT_COST, _ARRAY_COST = 56, 8, 64, 128


@attrs.frozen
class Envelope:
    """One message in flight: what it is, who sent it, who gets it."""

    kind: int
    receiver: ActorRef
    body: Any
    sender: ActorRef | None = None
    cid: int = 0


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


@attrs.define(eq=False)
class Frame:
    """An encoded envelope, ready to be written into one transport message."""

    header: bytes
    arrays: list[np.ndarray]
    offsets: list[int]
    size: int

    def write_into(self, out: memoryview) -> None:
        """Copy the frame into ``out`` (a writable byte buffer of at least ``size``)."""
        n = len(self.header)
        _PREFIX.pack_into(out, 0, MAGIC, n)
        out[8 : 8 + n] = self.header
        target = np.frombuffer(out, dtype=np.uint8, count=self.size)
        for array, offset in zip(self.arrays, self.offsets, strict=True):
            if array.nbytes:
                target[offset : offset + array.nbytes] = array.reshape(-1).view(np.uint8)

    def to_bytes(self) -> bytes:
        """The frame as one bytes object (one copy of every array)."""
        out = bytearray(self.size)
        self.write_into(memoryview(out))
        return bytes(out)


def _ref_tuple(ref: ActorRef | None) -> list[Any] | None:
    return None if ref is None else [ref.node, ref.name, ref.incarnation]


def encode(envelope: Envelope) -> Frame:
    """Encode an envelope.

    Raises:
        CodecError: (reason ``unencodable``) if the body is not a registered message or
            holds a value with no wire form (an object array, an arbitrary object).
    """
    arrays: list[np.ndarray] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in _ARRAY_KINDS:
                raise CodecError("unencodable", f"arrays of dtype {obj.dtype} cannot be sent")
            # ascontiguousarray turns a 0-d array into shape (1,): keep the shape.
            arrays.append(np.ascontiguousarray(obj).reshape(obj.shape))
            return msgpack.ExtType(_EXT_ARRAY, _U32.pack(len(arrays) - 1))
        if isinstance(obj, ActorRef):
            return msgpack.ExtType(_EXT_REF, msgpack.packb(_ref_tuple(obj)))
        if is_message(obj):
            inner = [message_tag(type(obj)), [getattr(obj, n) for n, _ in field_schema(type(obj))]]
            return msgpack.ExtType(_EXT_MESSAGE, msgpack.packb(inner, default=default))
        if isinstance(obj, enum.Enum):
            return obj.value
        if isinstance(obj, np.generic):
            return obj.item()
        raise CodecError("unencodable", f"values of type {type(obj).__name__} cannot be sent")

    body = envelope.body
    if envelope.kind == FAIL:
        tag, fields = "", list(body)
    else:
        if not is_message(body):
            raise CodecError(
                "unencodable",
                f"{type(body).__name__} is not a registered message (decorate it with @message())",
            )
        tag = message_tag(type(body))
        fields = [getattr(body, name) for name, _ in field_schema(type(body))]
    try:
        packed_fields = msgpack.packb(fields, default=default)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError("unencodable", str(exc)) from exc
    finally:
        # default refers to itself (for nested messages): break that cycle, or the
        # arrays it collected would live until the garbage collector runs.
        default = None  # type: ignore[assignment]
    descs: list[list[Any]] = []
    offset = 0
    for array in arrays:
        descs.append([array.dtype.str, list(array.shape), offset])
        offset = _align(offset + array.nbytes)
    header = msgpack.packb(
        [
            envelope.kind,
            tag,
            _ref_tuple(envelope.sender),
            _ref_tuple(envelope.receiver),
            envelope.cid,
            descs,
            packed_fields,
        ]
    )
    start = _align(8 + len(header))
    offsets = [start + d[2] for d in descs]
    size = offsets[-1] + arrays[-1].nbytes if arrays else 8 + len(header)
    return Frame(header, arrays, offsets, size)


def _is_int(value: Any) -> bool:
    # bool is an int subclass, and True passed for a shape or an incarnation once
    # reached numpy, which raised TypeError out of the node's serve loop.
    return type(value) is int


def _as_ref(value: Any, what: str) -> ActorRef:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not isinstance(value[1], str)
        or not _is_int(value[2])
    ):
        raise CodecError("bad_header", f"{what} is not a (node, name, incarnation) address")
    return ActorRef(value[0], value[1], value[2])


def _build(tag: str, values: Any) -> Any:
    cls = message_class(tag)
    if cls is None:
        raise CodecError("unknown_tag", f"no message registered under tag {tag!r:.80}")
    schema = field_schema(cls)
    if not isinstance(values, list | tuple) or len(values) != len(schema):
        raise CodecError("bad_field", f"{tag} expects {len(schema)} fields")
    kwargs = {}
    for (name, check), value in zip(schema, values, strict=True):
        try:
            kwargs[name] = check(value)
        except TypeError as exc:
            raise CodecError("bad_field", f"{tag}.{name}: {exc}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError("bad_field", f"{tag}: {exc}") from None


class _Reader:
    """One frame's decoding: its arrays, the budget it has left, how deep it is.

    Its hooks run inside msgpack's parser: they charge each container as it is
    built and stop the parse (by raising) once the budget is spent.
    """

    __slots__ = ("arrays", "budget", "counting", "depth", "left")

    def __init__(self, budget: int, counting: bool) -> None:
        self.arrays: list[np.ndarray] = []
        self.budget = budget
        self.left = budget
        self.depth = 0
        # Whether lists and maps are charged as they are built (nested messages and
        # arrays always are).
        self.counting = counting

    def charge(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            raise CodecError("over_budget", f"frame makes more than {self.budget} bytes of objects")

    def on_list(self, value: list[Any]) -> list[Any]:
        # Runs once per list of the frame: kept to one line of arithmetic.
        self.left -= _LIST_COST + _ITEM_COST * len(value)
        if self.left < 0:
            self.charge(0)
        return value

    def on_map(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.charge(sys.getsizeof(value))
        return value

    def unpack(self, data: Any, ext_hook: Any, *, strict_map_key: bool = False) -> Any:
        if not self.counting:
            return msgpack.unpackb(
                data,
                use_list=True,
                raw=False,
                # Not strict about map keys in fields: dict[int, ...] fields are legitimate.
                strict_map_key=strict_map_key,
                ext_hook=ext_hook,
            )
        return msgpack.unpackb(
            data,
            use_list=True,
            raw=False,
            strict_map_key=strict_map_key,
            list_hook=self.on_list,
            object_hook=self.on_map,
            ext_hook=ext_hook,
        )

    def on_ext(self, code: int, data: bytes) -> Any:
        if code == _EXT_ARRAY and len(data) == 4:
            (index,) = _U32.unpack(data)
            if index < len(self.arrays):
                return self.arrays[index]
            raise CodecError("bad_array", f"field refers to array {index} of {len(self.arrays)}")
        if code not in (_EXT_REF, _EXT_MESSAGE):
            raise CodecError("bad_field", f"unknown extension type {code}")
        # Checked before unpacking the inner value: each level is another parser on
        # the C stack.
        if self.depth >= MAX_NESTING:
            raise CodecError("too_deep", f"messages nest deeper than {MAX_NESTING}")
        self.charge(_OBJECT_COST)
        self.depth += 1
        try:
            if code == _EXT_REF:
                return _as_ref(self.unpack(data, _no_ext), "address")
            inner = self.unpack(data, self.on_ext)
        finally:
            self.depth -= 1
        if not isinstance(inner, list) or len(inner) != 2 or not isinstance(inner[0], str):
            raise CodecError("bad_field", "nested message is not (tag, fields)")
        return _build(inner[0], inner[1])


def _no_ext(code: int, data: bytes) -> Any:
    raise CodecError("bad_field", f"extension type {code} inside an address")


def decode(buffer: Any, *, max_size: int | None = None) -> Envelope:
    """Decode one frame; numpy arrays are views of ``buffer`` (keep it alive).

    Time and memory are linear in the frame (see the module docstring for the bounds).

    Raises:
        CodecError: for any frame that is not exactly what :func:`encode` makes for a
            registered message class, and for nothing else: ``reason`` is one of
            :data:`REASONS`.
    """
    try:
        return _decode(buffer, max_size)
    except CodecError:
        raise
    except Exception as exc:
        # The last line: every cause we know of is refused above with its own reason.
        raise CodecError("bad_frame", f"{type(exc).__name__}: {exc}") from None


def _decode(buffer: Any, max_size: int | None) -> Envelope:
    view = memoryview(buffer).cast("B")
    size = len(view)
    if max_size is not None and size > max_size:
        raise CodecError("oversized", f"frame of {size} bytes exceeds the limit of {max_size}")
    if size < 8:
        raise CodecError("truncated", f"frame of {size} bytes is shorter than its prefix")
    magic, header_size = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise CodecError("bad_magic", f"frame starts with {bytes(magic)!r}, not {MAGIC!r}")
    if 8 + header_size > size:
        raise CodecError("truncated", f"header of {header_size} bytes overruns a {size}-byte frame")
    # However it is spent, a small header cannot reach the floor of the budget (msgpack
    # makes at most ~80 bytes of objects per byte): skip the hooks, which cost as much
    # as the rest of decoding an ordinary small frame.
    reader = _Reader(
        min(BUDGET_PER_BYTE * size + BUDGET_FLOOR, BUDGET_CAP),
        counting=header_size > _UNCOUNTED_HEADER,
    )
    try:
        header = reader.unpack(view[8 : 8 + header_size], _no_ext, strict_map_key=True)
    except CodecError as exc:
        if exc.reason == "over_budget":
            raise
        raise CodecError("bad_header", f"header is not msgpack ({exc})") from None
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError("bad_header", f"header is not msgpack ({exc!r})") from None
    if not isinstance(header, list) or len(header) != 7:
        raise CodecError("bad_header", "header is not a 7-item list")
    kind, tag, sender, receiver, cid, descs, packed_fields = header
    if not _is_int(kind) or kind not in _KINDS or not isinstance(tag, str) or not _is_int(cid):
        raise CodecError("bad_header", "bad kind, tag or correlation id")
    if not isinstance(descs, list) or not isinstance(packed_fields, bytes):
        raise CodecError("bad_header", "bad array table or field block")
    start = _align(8 + header_size)
    for desc in descs:
        reader.charge(_ARRAY_COST)
        reader.arrays.append(_array(buffer, desc, start, size))
    try:
        fields = reader.unpack(packed_fields, reader.on_ext)
    except CodecError:
        raise
    except msgpack.StackError:
        raise CodecError("too_deep", "containers nest deeper than 1023") from None
    except Exception as exc:
        raise CodecError("bad_field", f"field block is not msgpack ({exc!r})") from None
    if kind == FAIL:
        if (
            not isinstance(fields, list)
            or len(fields) != 2
            or not all(isinstance(f, str) for f in fields)
        ):
            raise CodecError("bad_field", "failure reply is not (error type, message)")
        body: Any = tuple(fields)
    else:
        body = _build(tag, fields)
    return Envelope(
        kind=kind,
        receiver=_as_ref(receiver, "receiver"),
        body=body,
        sender=None if sender is None else _as_ref(sender, "sender"),
        cid=cid,
    )


def _array(buffer: Any, desc: Any, start: int, size: int) -> np.ndarray:
    if not isinstance(desc, list) or len(desc) != 3:
        raise CodecError("bad_array", "array descriptor is not (dtype, shape, offset)")
    dtype_str, shape, offset = desc
    dtype = None
    # Only the form encode writes (dtype.str, e.g. "<f8", "|b1"): numpy's dtype parser
    # accepts far more, some of it with warnings or surprising results.
    if isinstance(dtype_str, str) and _DTYPE_STR.fullmatch(dtype_str):
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:
            dtype = None
    if dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.hasobject:
        raise CodecError("bad_array", f"dtype {dtype_str!r:.40} is not a plain numeric dtype")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_DIMS
        or not all(_is_int(n) and n >= 0 for n in shape)
        or not _is_int(offset)
        or offset < 0
        or offset % _ALIGN
    ):
        raise CodecError("bad_array", f"bad shape {shape!r:.200} or offset {offset!r:.40}")
    count = 1
    for n in shape:
        count *= n
    begin = start + offset
    if count == 0:
        try:
            return np.empty(shape, dtype=dtype)
        except (ValueError, OverflowError):
            raise CodecError("bad_array", f"bad shape {shape!r}") from None
    if begin + count * dtype.itemsize > size:
        raise CodecError("truncated", f"array of {count * dtype.itemsize} bytes overruns the frame")
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=begin).reshape(shape)
