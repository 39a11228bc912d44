"""The codec: envelopes to frames and back, and what it refuses."""

from __future__ import annotations

import enum
import struct
import subprocess
import sys
import tracemalloc
from typing import Any, Optional

import attrs
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from actorml.codec import (
    ASK,
    FAIL,
    MAGIC,
    MAX_NESTING,
    PEAK_PER_BYTE,
    REASONS,
    REPLY,
    TELL,
    CodecError,
    Envelope,
    decode,
    encode,
)
from actorml.messages import ActorRef, message
from tests import hostile_frames


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@message("test.codec.scalars")
class Scalars:
    i: int
    f: float
    b: bool
    s: str
    raw: bytes
    nothing: None


@message("test.codec.optionals")
class Optionals:
    maybe_int: int | None
    maybe_str: Optional[str]  # noqa: UP045 - the typing spelling must work too


@message("test.codec.containers")
class Containers:
    ints: list[int]
    pair: tuple[int, str]
    floats: tuple[float, ...]
    table: dict[str, int]
    by_id: dict[int, list[float]]


@message("test.codec.inner")
class Inner:
    name: str
    weights: np.ndarray


@message("test.codec.outer")
class Outer:
    inner: Inner
    many: list[Inner]
    ref: ActorRef
    refs: list[ActorRef]
    maybe_ref: ActorRef | None
    color: Color
    level: Level


@message("test.codec.arrays")
class Arrays:
    arrays: list[np.ndarray]


@message("test.codec.anything")
class Anything:
    value: Any


@message("test.codec.empty")
class Empty:
    pass


class Unregistered:
    pass


@attrs.frozen
class UnregisteredAttrs:
    x: int


TO = ActorRef("b", "echo", 7)
FROM = ActorRef("a", "asker", 3)


def roundtrip(body: Any, kind: int = TELL, cid: int = 0) -> Envelope:
    """Encode, flatten to bytes as a transport would, decode."""
    env = Envelope(kind, TO, body, FROM, cid)
    out = decode(encode(env).to_bytes())
    assert (out.kind, out.receiver, out.sender, out.cid) == (kind, TO, FROM, cid)
    return out


def assert_same(a: Any, b: Any) -> None:
    """Deep equality that also compares arrays by dtype, shape and content."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    elif attrs.has(type(a)):
        assert type(a) is type(b)
        for field in attrs.fields(type(a)):
            assert_same(getattr(a, field.name), getattr(b, field.name))
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert type(b) is dict and a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert type(a) is type(b) and a == b


def split(frame: bytes) -> tuple[list[Any], bytes]:
    """A valid frame's header (as a list) and its array section."""
    (size,) = struct.unpack_from("<I", frame, 4)
    start = (8 + size + 15) & ~15
    return msgpack.unpackb(frame[8 : 8 + size]), frame[start:]


def join(header: Any, arrays: bytes = b"", *, raw_header: bytes | None = None) -> bytes:
    """A frame from a header and an array section, padded as the codec pads."""
    packed = msgpack.packb(header) if raw_header is None else raw_header
    head = MAGIC + struct.pack("<I", len(packed)) + packed
    if arrays:
        head += b"\0" * (((len(head) + 15) & ~15) - len(head))
    return head + arrays


def valid_frame(body: Any = None) -> bytes:
    if body is None:
        body = Inner("w", np.arange(6, dtype=np.float32))
    return encode(Envelope(ASK, TO, body, FROM, 42)).to_bytes()


def reason_of(frame: bytes, **kwargs: Any) -> str:
    with pytest.raises(CodecError) as info:
        decode(frame, **kwargs)
    return info.value.reason


def fields_frame(fields: bytes, tag: str = "test.codec.anything", arrays: Any = ()) -> bytes:
    """A frame whose header is valid and whose field block is ``fields``, as given."""
    return join([ASK, tag, ["a", "asker", 3], ["b", "echo", 7], 1, list(arrays), fields])


def nested_messages(depth: int) -> bytes:
    return hostile_frames.nested_messages("test.codec.anything", depth)


# Inputs that found bugs in a live cluster, kept as examples of the property tests.
BOOL_SHAPE = join(
    [
        ASK,
        "test.codec.inner",
        None,
        ["b", "echo", 7],
        1,
        [["<f4", [True], 0]],
        msgpack.packb(["w", msgpack.ExtType(1, struct.pack("<I", 0))]),
    ],
    b"\0" * 16,
)
BOOL_SHAPE_EMPTY = join(
    [
        ASK,
        "test.codec.inner",
        None,
        ["b", "echo", 7],
        1,
        [["<f4", [True, 0], 0]],
        msgpack.packb(["w", msgpack.ExtType(1, struct.pack("<I", 0))]),
    ]
)
DEEP_MESSAGES = fields_frame(nested_messages(200))
DEEP_LISTS = fields_frame(b"\x91" + b"\x91" * 10_000 + b"\xc0")
EMPTY_LISTS_BOMB = fields_frame(hostile_frames.empty_lists(1 << 18))
NESTED_UNKNOWN_TAG = fields_frame(hostile_frames.nested_unknown_tag())


class TestRoundTrip:
    def test_scalars(self) -> None:
        """int, float, bool, str, bytes and None fields come back equal and typed."""
        body = Scalars(-(2**63), 2.5, True, "héllo ✓", b"\x00\xff", None)
        assert_same(roundtrip(body).body, body)

    def test_int_given_for_float_field(self) -> None:
        """An int in a float field arrives as a float."""
        out = roundtrip(Scalars(1, 3, False, "", b"", None)).body  # type: ignore[arg-type]
        assert type(out.f) is float and out.f == 3.0

    @pytest.mark.parametrize(("maybe_int", "maybe_str"), [(None, None), (5, "x")])
    def test_optionals(self, maybe_int: int | None, maybe_str: str | None) -> None:
        """Optional fields round-trip both set and unset."""
        body = Optionals(maybe_int, maybe_str)
        assert_same(roundtrip(body).body, body)

    def test_containers(self) -> None:
        """Lists, fixed and variable tuples and dicts (int keys too) keep their types."""
        body = Containers([1, 2], (3, "x"), (1.5, 2.0), {"a": 1}, {7: [0.5], -1: []})
        assert_same(roundtrip(body).body, body)

    def test_nested_messages_refs_and_enums(self) -> None:
        """Nested messages, actor refs and enums (plain and int) round-trip."""
        inner = Inner("w", np.arange(3, dtype=np.int16))
        body = Outer(
            inner,
            [inner, Inner("z", np.zeros((2, 2)))],
            ActorRef("n", "x", 9),
            [ActorRef("n", "y")],
            None,
            Color.GREEN,
            Level.HIGH,
        )
        out = roundtrip(body).body
        assert_same(out, body)
        assert out.color is Color.GREEN and out.level is Level.HIGH

    def test_empty_message(self) -> None:
        """A message without fields round-trips."""
        assert isinstance(roundtrip(Empty()).body, Empty)

    @pytest.mark.parametrize(
        "array",
        [
            np.arange(10, dtype=np.float64),
            np.arange(12, dtype=np.int32).reshape(3, 4),
            np.array([True, False, True]),
            np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
            np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
            np.arange(5, dtype=">i8"),
            np.array([1.0, np.nan, np.inf], dtype=np.float16),
            np.zeros((0,), dtype=np.float32),
            np.zeros((3, 0), dtype=np.int64),
            np.array(7.5),
            np.array(3, dtype=np.int8),
        ],
        ids=lambda a: f"{a.dtype.str}{list(a.shape)}",
    )
    def test_arrays(self, array: np.ndarray) -> None:
        """Arrays keep dtype (byte order included), shape and content, incl. empty and 0-d."""
        body = Arrays([array, array[..., None] if array.ndim else array])
        assert_same(roundtrip(body).body, body)

    @pytest.mark.parametrize(
        "array",
        [
            np.arange(20, dtype=np.float64)[::3],
            np.arange(12, dtype=np.int32).reshape(3, 4).T,
            np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            np.arange(24, dtype=np.int16).reshape(2, 3, 4)[:, ::-1, 1:],
        ],
        ids=["strided", "transposed", "fortran", "sliced"],
    )
    def test_non_contiguous_arrays(self, array: np.ndarray) -> None:
        """Non-contiguous input arrays arrive equal, as C-contiguous arrays."""
        out = roundtrip(Arrays([array])).body.arrays[0]
        assert_same(out, array)
        assert out.flags.c_contiguous

    def test_arrays_are_views_of_the_frame(self) -> None:
        """Decoded arrays share the received buffer (no copy) and are aligned."""
        buffer = bytearray(valid_frame(Arrays([np.arange(4.0), np.arange(3, dtype=np.int8)])))
        arrays = decode(buffer).body.arrays
        for array in arrays:
            assert not array.flags.owndata
            assert array.ctypes.data % 16 == 0 or array.dtype.itemsize == 1
        arrays[0][0] = 99.0  # writing the view writes the buffer
        assert decode(buffer).body.arrays[0][0] == 99.0

    @pytest.mark.parametrize("kind", [TELL, ASK, REPLY])
    def test_kinds_and_cid(self, kind: int) -> None:
        """Kind and correlation id survive."""
        assert roundtrip(Empty(), kind=kind, cid=2**40).kind == kind

    def test_fail_envelope(self) -> None:
        """A FAIL envelope carries (error type, text) as a tuple."""
        out = roundtrip(("ValueError", "bad input 3"), kind=FAIL, cid=5)
        assert out.body == ("ValueError", "bad input 3")

    def test_no_sender(self) -> None:
        """An envelope without a sender decodes with sender None."""
        out = decode(encode(Envelope(TELL, TO, Empty())).to_bytes())
        assert out.sender is None

    def test_any_field_passes_through(self) -> None:
        """A field annotated Any carries plain values unchecked."""
        value = {"k": [1, 2.5, None, "s", b"b"]}
        assert roundtrip(Anything(value)).body.value == value


class TestRejection:
    def test_too_short(self) -> None:
        """A frame shorter than its 8-byte prefix is truncated."""
        assert reason_of(b"AML1\x00") == "truncated"

    def test_bad_magic(self) -> None:
        """A frame not starting with the magic is refused."""
        assert reason_of(b"JUNK" + valid_frame()[4:]) == "bad_magic"

    def test_header_overrun(self) -> None:
        """A header length past the end of the frame is truncated."""
        assert reason_of(MAGIC + struct.pack("<I", 1000) + b"\x90" * 10) == "truncated"

    def test_header_not_msgpack(self) -> None:
        """A header that is not msgpack is a bad header."""
        assert reason_of(join(None, raw_header=b"\xc1\xc1")) == "bad_header"

    @pytest.mark.parametrize(
        "header",
        [[], [TELL], "text", [[1], "t", None, None, 0, [], b""], [9, "t", None, None, 0, [], b""]],
        ids=["empty", "short", "not-a-list", "unhashable-kind", "unknown-kind"],
    )
    def test_malformed_header(self, header: Any) -> None:
        """A header that is not the 7-item list the codec writes is a bad header."""
        assert reason_of(join(header)) == "bad_header"

    def test_bad_receiver(self) -> None:
        """A receiver that is not (node, name, incarnation) is a bad header."""
        header, arrays = split(valid_frame())
        header[3] = ["b", "echo"]
        assert reason_of(join(header, arrays)) == "bad_header"

    def test_unknown_tag(self) -> None:
        """A tag nobody registered is refused."""
        header, arrays = split(valid_frame())
        header[1] = "test.codec.never-registered"
        assert reason_of(join(header, arrays)) == "unknown_tag"

    def test_wrong_field_type(self) -> None:
        """A field whose value does not match its annotation is refused."""
        header, arrays = split(valid_frame())
        fields = msgpack.unpackb(header[6])
        header[6] = msgpack.packb([42, fields[1]])  # name: str gets an int
        with pytest.raises(CodecError, match=r"^bad_field: test\.codec\.inner\.name: expected str"):
            decode(join(header, arrays))

    @pytest.mark.parametrize("count", [0, 1, 3])
    def test_wrong_field_count(self, count: int) -> None:
        """Too few or too many fields are refused."""
        header, arrays = split(valid_frame())
        header[6] = msgpack.packb(["w"] * count)
        assert reason_of(join(header, arrays)) == "bad_field"

    def test_object_dtype(self) -> None:
        """An array descriptor with an object dtype is refused (that would be pickle)."""
        header, arrays = split(valid_frame())
        header[5][0][0] = "|O"
        assert reason_of(join(header, arrays)) == "bad_array"

    @pytest.mark.parametrize("dtype", ["<U4", "|S3", "<M8[s]", "|V8", "a", "i4,i4", "<f3"])
    def test_other_dtypes(self, dtype: str) -> None:
        """Only plain numeric and boolean dtypes are accepted."""
        header, arrays = split(valid_frame())
        header[5][0][0] = dtype
        assert reason_of(join(header, arrays)) == "bad_array"

    def test_array_overruns_frame(self) -> None:
        """An array whose bytes run past the end of the frame is truncated."""
        header, arrays = split(valid_frame())
        header[5][0][1] = [1000]
        assert reason_of(join(header, arrays)) == "truncated"

    @pytest.mark.parametrize(
        "desc",
        [[], ["<f4", [6]], ["<f4", "6", 0], ["<f4", [-1], 0], ["<f4", [6], 3], ["<f4", [6], -16]],
        ids=["empty", "two-items", "shape-str", "negative-dim", "misaligned", "negative-offset"],
    )
    def test_bad_descriptor(self, desc: list[Any]) -> None:
        """A malformed array descriptor is refused."""
        header, arrays = split(valid_frame())
        header[5][0] = desc
        assert reason_of(join(header, arrays)) == "bad_array"

    def test_array_reference_out_of_range(self) -> None:
        """A field pointing at an array the frame does not describe is refused."""
        header, arrays = split(valid_frame())
        header[5] = []
        assert reason_of(join(header, arrays)) == "bad_array"

    def test_oversized(self) -> None:
        """A frame larger than max_size is refused before it is parsed."""
        frame = valid_frame()
        assert reason_of(frame, max_size=len(frame) - 1) == "oversized"
        decode(frame, max_size=len(frame))

    def test_fail_body_must_be_two_strings(self) -> None:
        """A FAIL envelope whose body is not (type, text) is refused."""
        frame = encode(Envelope(FAIL, TO, ("E", "x"), FROM, 1)).to_bytes()
        header, _ = split(frame)
        header[6] = msgpack.packb(["E", 3])
        assert reason_of(join(header)) == "bad_field"


class TestUnencodable:
    @pytest.mark.parametrize(
        "body",
        [
            Anything(np.array([object()], dtype=object)),
            Anything(np.array(["text"])),
            Anything(object()),
            Anything(UnregisteredAttrs(1)),
            Anything(2**70),
            Inner("w", np.array([None, 1], dtype=object)),
        ],
        ids=["object-array", "str-array", "object", "unregistered-attrs", "huge-int", "nested"],
    )
    def test_unencodable_values(self, body: Any) -> None:
        """Values without a wire form raise CodecError('unencodable')."""
        with pytest.raises(CodecError) as info:
            encode(Envelope(TELL, TO, body))
        assert info.value.reason == "unencodable"

    def test_unregistered_body(self) -> None:
        """A body whose class is not registered raises CodecError('unencodable')."""
        with pytest.raises(CodecError, match=r"^unencodable: Unregistered is not a registered"):
            encode(Envelope(TELL, TO, Unregistered()))


# --- property tests -------------------------------------------------------------------

DTYPES = ["<f8", "<f4", "<f2", "<i8", "<i4", ">i4", "<i2", "|i1", "<u8", "|u1", "|b1", "<c16"]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        np.dtype(dtype),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
# Half of the arrays handed to the codec are strided views of a larger one.
send_arrays = st.one_of(arrays, arrays.map(lambda a: a[::-1] if a.ndim else a))
text = st.text(max_size=12)
ints = st.integers(-(2**63), 2**64 - 1)
floats = st.floats(allow_nan=False)
refs = st.builds(ActorRef, text, text, st.integers(0, 2**40))
inners = st.builds(Inner, text, send_arrays)
messages = st.one_of(
    st.builds(Scalars, ints, floats, st.booleans(), text, st.binary(max_size=16), st.none()),
    st.builds(Optionals, st.none() | ints, st.none() | text),
    st.builds(
        Containers,
        st.lists(ints, max_size=5),
        st.tuples(ints, text),
        st.lists(floats, max_size=5).map(tuple),
        st.dictionaries(text, ints, max_size=4),
        st.dictionaries(ints, st.lists(floats, max_size=3), max_size=4),
    ),
    inners,
    st.builds(
        Outer,
        inners,
        st.lists(inners, max_size=3),
        refs,
        st.lists(refs, max_size=3),
        st.none() | refs,
        st.sampled_from(Color),
        st.sampled_from(Level),
    ),
    st.builds(Arrays, st.lists(send_arrays, max_size=4)),
)


def decodes_or_refuses(data: bytes) -> None:
    try:
        decode(data, max_size=1 << 20)
    except CodecError:
        pass


plain = st.recursive(
    st.none() | st.booleans() | ints | floats | text | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(valid_frame(draw(messages)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(len(frame) - 1, 0)))
        if op == "flip" and frame:
            frame[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del frame[at:]
        elif op == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif frame:
            del frame[at : at + draw(st.integers(1, 8))]
    return bytes(frame)


@st.composite
def rewritten_headers(draw: st.DrawFn) -> bytes:
    """Valid frames with one header item (or one array descriptor) replaced."""
    header, arrays = split(valid_frame(draw(messages)))
    if header[5] and draw(st.booleans()):
        desc = header[5][draw(st.integers(0, len(header[5]) - 1))]
        desc[draw(st.integers(0, 2))] = draw(plain)
    else:
        header[draw(st.integers(0, 6))] = draw(plain)
    return join(header, arrays)


class TestProperties:
    @given(body=messages, kind=st.sampled_from([TELL, ASK, REPLY]), cid=st.integers(0, 2**63))
    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
    def test_messages_round_trip(self, body: Any, kind: int, cid: int) -> None:
        """Any message built from supported field types decodes to an equal message."""
        assert_same(roundtrip(body, kind, cid).body, body)

    @given(data=st.binary(max_size=256) | st.binary(max_size=64).map(lambda b: MAGIC + b))
    @example(data=BOOL_SHAPE)
    @example(data=BOOL_SHAPE_EMPTY)
    @example(data=DEEP_MESSAGES)
    @example(data=DEEP_LISTS)
    @example(data=EMPTY_LISTS_BOMB)
    @example(data=NESTED_UNKNOWN_TAG)
    @settings(max_examples=300)
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """Arbitrary bytes decode or raise CodecError, nothing else."""
        decodes_or_refuses(data)

    @given(header=plain, tail=st.binary(max_size=64))
    @settings(max_examples=200)
    def test_arbitrary_headers(self, header: Any, tail: bytes) -> None:
        """A well-framed header of arbitrary msgpack decodes or raises CodecError."""
        decodes_or_refuses(join(header, tail))

    @given(frame=mutated_frames())
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_mutated_frames(self, frame: bytes) -> None:
        """Truncated, flipped or spliced valid frames decode or raise CodecError."""
        decodes_or_refuses(frame)

    @given(frame=rewritten_headers())
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_rewritten_headers(self, frame: bytes) -> None:
        """Valid frames with a header item replaced decode or raise CodecError."""
        decodes_or_refuses(frame)


# --- hostile frames -------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def peak_of(frame: bytes) -> tuple[str, int]:
    """decode's outcome (a reason, or "ok") and the peak it allocated doing it."""
    tracemalloc.start()
    try:
        decode(frame)
        outcome = "ok"
    except CodecError as exc:
        outcome = exc.reason
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak


def peak_bound(frame: bytes) -> int:
    """The allocation the codec's docstring promises for ``frame``."""
    return PEAK_PER_BYTE * len(frame) + 256 * 1024


class TestHostile:
    @pytest.mark.parametrize("frame", [BOOL_SHAPE, BOOL_SHAPE_EMPTY], ids=["view", "empty"])
    def test_bool_in_shape(self, frame: bytes) -> None:
        """A bool among an array's dimensions is a bad array, not a TypeError from numpy."""
        assert reason_of(frame) == "bad_array"

    @pytest.mark.parametrize("index", [0, 4])
    def test_bool_kind_or_cid(self, index: int) -> None:
        """A bool where the header wants an int (kind, cid) is a bad header."""
        header, arrays = split(valid_frame())
        header[index] = True
        assert reason_of(join(header, arrays)) == "bad_header"

    def test_bool_incarnation(self) -> None:
        """An address whose incarnation is a bool is a bad header."""
        header, arrays = split(valid_frame())
        header[3] = ["b", "echo", True]
        assert reason_of(join(header, arrays)) == "bad_header"

    def test_nested_unknown_tag(self) -> None:
        """A nested message whose tag nobody registered is refused as an unknown tag."""
        with pytest.raises(CodecError, match=r"^unknown_tag: .*never-registered"):
            decode(NESTED_UNKNOWN_TAG)

    def test_nesting_up_to_the_limit(self) -> None:
        """Messages nested MAX_NESTING deep decode; one more level is too deep."""
        # nested_messages(d) puts d + 1 messages inside the frame's own.
        body = decode(fields_frame(nested_messages(MAX_NESTING - 1))).body
        for _ in range(MAX_NESTING):
            body = body.value
        assert body == Anything(None)
        assert reason_of(fields_frame(nested_messages(MAX_NESTING))) == "too_deep"

    def test_deep_containers(self) -> None:
        """10,000 nested lists are too deep, not a RecursionError."""
        assert reason_of(DEEP_LISTS) == "too_deep"

    @pytest.mark.parametrize("depth", [200, 10_000])
    def test_deep_messages_in_a_subprocess(self, depth: int) -> None:
        """Deeply nested messages are refused; a crash would only kill the subprocess."""
        code = (
            "import sys, tests.test_codec\n"
            "from actorml.codec import CodecError, decode\n"
            "try:\n    decode(sys.stdin.buffer.read())\n"
            "except CodecError as exc:\n    print(exc.reason)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=fields_frame(nested_messages(depth)),
            capture_output=True,
            cwd=ROOT,
            timeout=120,
        )
        assert (done.returncode, done.stdout.strip()) == (0, b"too_deep"), done.stderr[-2000:]

    def test_empty_lists_bomb(self) -> None:
        """A frame of empty lists is refused once it has spent its budget, within the bound."""
        outcome, peak = peak_of(EMPTY_LISTS_BOMB)
        assert outcome == "over_budget"
        assert peak <= peak_bound(EMPTY_LISTS_BOMB)

    def test_address_holding_an_extension(self) -> None:
        """An address whose payload holds an extension type is refused."""
        ref = msgpack.ExtType(3, msgpack.packb(["n", "x", msgpack.ExtType(3, b"")]))
        assert reason_of(fields_frame(msgpack.packb([ref]))) == "bad_field"

    def test_unexpected_error_is_a_codec_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Whatever goes wrong inside decode reaches the caller as CodecError('bad_frame')."""

        def broken(*args: Any) -> Any:
            raise KeyError("surprise")

        monkeypatch.setattr("actorml.codec._build", broken)
        assert reason_of(valid_frame()) == "bad_frame"


N = 1 << 20


def _array32(items: bytes, count: int) -> bytes:
    return b"\xdd" + struct.pack(">I", count) + items


def _mixed(lists_share: float) -> bytes:
    lists = int(N * lists_share)
    strings = (N - lists) // 3
    return b"\x91\x92" + _array32(b"\x90" * lists, lists) + _array32(b"\xa2ab" * strings, strings)


REF = msgpack.packb(msgpack.ExtType(3, msgpack.packb(["a", "b", 1])))
# The constructions that make the most Python objects per byte that we know of.
BOMBS = {
    "empty-lists": hostile_frames.empty_lists(N),
    "empty-maps": b"\x91" + _array32(b"\x80" * N, N),
    "one-item-maps": b"\x91" + _array32(b"\x81\x00\xc0" * (N // 3), N // 3),
    "two-char-strings": b"\x91" + _array32(b"\xa2ab" * (N // 3), N // 3),
    "uint16s": b"\x91" + _array32(b"\xcd\x12\x34" * (N // 3), N // 3),
    "lists-and-strings": _mixed(0.25),
    "addresses": b"\x91" + _array32(REF * (N // len(REF)), N // len(REF)),
    "messages": b"\x91"
    + _array32(
        msgpack.packb(msgpack.ExtType(2, msgpack.packb(["test.codec.empty", []]))) * (N // 24),
        N // 24,
    ),
    "huge-declared-lengths": b"\x91" + b"\xdd\xff\xff\xff\xff" * 4 + b"\xc0" * N,
}


class TestBounds:
    @pytest.mark.parametrize("name", list(BOMBS))
    def test_peak_allocation(self, name: str) -> None:
        """The worst frames we know allocate within the documented multiple of their size."""
        frame = fields_frame(BOMBS[name])
        outcome, peak = peak_of(frame)
        assert outcome == "ok" or outcome in REASONS
        assert peak <= peak_bound(frame), f"{peak / len(frame):.1f} bytes per frame byte"


registered_tags = st.sampled_from(
    ["test.codec.anything", "test.codec.inner", "test.codec.outer", "test.codec.empty",
     "test.codec.containers", "test.codec.never-registered"]
)  # fmt: skip
ext_leaves = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))


def _extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-2, 2) | text, inner, max_size=3)
        | st.builds(
            lambda tag, fields: msgpack.ExtType(2, msgpack.packb([tag, fields])),
            registered_tags,
            st.lists(inner, max_size=3),
        )
        | st.lists(inner, max_size=3).map(lambda v: msgpack.ExtType(3, msgpack.packb(v)))
        | st.builds(lambda v: msgpack.ExtType(1, struct.pack("<I", v)), st.integers(0, 3))
    )


hostile_values = st.recursive(plain | ext_leaves, _extend, max_leaves=30)
# Raw msgpack that no packb call writes: deep openings and lengths nothing follows.
raw_prefixes = st.sampled_from(
    [b"", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
     b"\xdb\x7f\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x02", b"\x91" * 1100, b"\x81\x00" * 600]
)  # fmt: skip


@st.composite
def hostile_field_frames(draw: st.DrawFn) -> bytes:
    """Valid headers around field blocks of arbitrary (nested, extended) msgpack."""
    value = msgpack.packb(draw(hostile_values))
    if draw(st.booleans()):
        value = b"\x91" + value  # a one-field list, as the codec writes
    fields = draw(raw_prefixes) + value + draw(st.binary(max_size=4))
    descs = draw(st.lists(st.sampled_from([["<f4", [2], 0], ["|b1", [0], 0]]), max_size=2))
    tail = b"\0" * 16 if descs else b""
    return join([ASK, draw(registered_tags), None, ["b", "echo", 7], 1, descs, fields], tail)


class TestHostileProperties:
    @given(frame=hostile_field_frames())
    @example(frame=BOOL_SHAPE)
    @example(frame=DEEP_MESSAGES)
    @example(frame=DEEP_LISTS)
    @example(frame=EMPTY_LISTS_BOMB)
    @example(frame=NESTED_UNKNOWN_TAG)
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_hostile_fields(self, frame: bytes) -> None:
        """Arbitrary nested field blocks decode or raise CodecError, within the allocation bound."""
        outcome, peak = peak_of(frame)
        assert outcome == "ok" or outcome in REASONS
        assert peak <= peak_bound(frame)
