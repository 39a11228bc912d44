"""Field blocks a hostile peer sent to live clusters (issue 8), for codec and node tests."""

from __future__ import annotations

import struct

import msgpack


def nested_messages(tag: str, depth: int) -> bytes:
    """A one-field block: ``depth + 1`` messages ``tag`` (one ``Any`` field each), each
    inside the next as extension type 2, the innermost holding None.

    Built outside in as byte chunks: packing each level would cost depth squared.
    """
    core = msgpack.packb([tag, [None]])
    prefix = b"\x92" + msgpack.packb(tag) + b"\x91"
    chunks, inner = [core], len(core)
    for _ in range(depth):
        chunk = prefix + b"\xc9" + struct.pack(">I", inner) + b"\x02"
        chunks.append(chunk)
        inner += len(chunk)
    chunks.reverse()
    return b"\x91" + b"\xc9" + struct.pack(">I", inner) + b"\x02" + b"".join(chunks)


def empty_lists(count: int) -> bytes:
    """A one-field block [[[], [], ...]]: one byte on the wire, ~64 in Python, per list."""
    return b"\x91\xdd" + struct.pack(">I", count) + b"\x90" * count


def nested_unknown_tag() -> bytes:
    """A one-field block holding a nested message whose tag nobody registered."""
    return msgpack.packb([msgpack.ExtType(2, msgpack.packb(["test.never-registered", []]))])
