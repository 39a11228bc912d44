"""Line numbers for key paths in TOML text: tomllib gives none, so scan the raw text.

`scan_lines` maps key paths such as ``node[1].actor[0].kind`` (and table paths) to the
line they first appear on; `line_of` finds the line of a key path, falling back to its
nearest enclosing table; `join` builds those key paths; an `Origin` (a source and its
lines) turns a key path and a problem into a located `TopologyError`. Knows nothing
about topologies.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping

import attrs

from ..errors import TopologyError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SEGMENT = re.compile(r'\.?(?:"(?:[^"\\]|\\.)*"|[^."\[]+)|\[\d+\]')


def join(prefix: str, key: str | int) -> str:
    """Extend a key path: ``node[1]``, ``node[1].actor``, ``args."odd key"``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def line_of(lines: Mapping[str, int], key: str) -> int | None:
    """The line of ``key``, else of the nearest enclosing table or key that has one."""
    if not lines or not key:
        return None
    ends = [m.end() for m in _SEGMENT.finditer(key)]
    return next((lines[key[:e]] for e in reversed(ends) if key[:e] in lines), None)


@attrs.frozen
class Origin:
    """Where a topology came from: its source (a path, ``"<string>"``, ``"<dict>"``) and
    the first line of each key path in it (empty when there is no text)."""

    source: str
    lines: Mapping[str, int] = attrs.field(eq=False)

    def error(self, key: str, problem: str) -> TopologyError:
        """``problem`` at ``key``, located in this source."""
        return TopologyError(key, problem, source=self.source, line=line_of(self.lines, key))

    def locate(self, exc: TopologyError) -> TopologyError:
        """``exc`` located in this source, unless it already names a source."""
        return exc if exc.source is not None else self.error(exc.key, exc.problem)


def scan_lines(text: str) -> dict[str, int]:
    """Map key paths (``node[1].actor[0].kind``) and table paths to their first line."""
    lines: dict[str, int] = {}
    with contextlib.suppress(Exception):  # line numbers are a courtesy: never fail on them
        _scan_into(text, lines)
    return lines


@attrs.define
class _ValueState:
    depth: int = 0  # open [ and { of a value spanning lines
    multiline: str | None = None  # the closing quotes of an open multi-line string


def _scan_into(text: str, lines: dict[str, int]) -> None:
    table = ""
    aot_counts: dict[str, int] = {}  # array-of-tables path -> elements seen so far
    state = _ValueState()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if state.multiline or state.depth:
            _scan_value(raw, state)
            continue
        s = raw.strip()
        if s.startswith("[["):
            parsed = _parse_key(s, 2)
            if parsed and s.startswith("]]", parsed[1]):
                parts = parsed[0]
                path = join(_resolve(parts[:-1], aot_counts), parts[-1])
                count = aot_counts[path] = aot_counts.get(path, 0) + 1
                table = f"{path}[{count - 1}]"
                lines.setdefault(path, lineno)
                lines.setdefault(table, lineno)
        elif s.startswith("["):
            parsed = _parse_key(s, 1)
            if parsed and s.startswith("]", parsed[1]):
                table = _resolve(parsed[0], aot_counts)
                lines.setdefault(table, lineno)
        elif s and not s.startswith("#"):
            parsed = _parse_key(s, 0)
            if parsed and s.startswith("=", parsed[1]):
                path = table
                for part in parsed[0]:
                    path = join(path, part)
                    lines.setdefault(path, lineno)
                _scan_value(s[parsed[1] + 1 :], state)


def _resolve(parts: list[str], aot_counts: Mapping[str, int]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
        if path in aot_counts:
            path = f"{path}[{aot_counts[path] - 1}]"
    return path


def _parse_key(s: str, i: int) -> tuple[list[str], int] | None:
    """Parse a (dotted, possibly quoted) key at ``s[i:]``: (parts, index after it)."""
    parts: list[str] = []
    while True:
        while s[i : i + 1] in (" ", "\t"):
            i += 1
        if s[i : i + 1] == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                return None
            try:
                parts.append(json.loads(s[i : j + 1]))
            except ValueError:  # a TOML-only escape such as \e: close enough
                parts.append(s[i + 1 : j])
            i = j + 1
        elif s[i : i + 1] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1 : j])
            i = j + 1
        else:
            match = _BARE_KEY.match(s, i)
            if not match:
                return None
            parts.append(match.group())
            i = match.end()
        while s[i : i + 1] in (" ", "\t"):
            i += 1
        if s[i : i + 1] != ".":
            return parts, i
        i += 1


def _scan_value(s: str, state: _ValueState) -> None:
    """Track brackets and multi-line strings so keys inside values are not mistaken."""
    i = 0
    while i < len(s):
        if state.multiline:
            j = s.find(state.multiline, i)
            if j < 0:
                return
            i, state.multiline = j + 3, None
            continue
        c = s[i]
        if c == "#":
            return
        if c in "\"'":
            if s.startswith(c * 3, i):
                state.multiline = c * 3
                i += 3
                continue
            j = i + 1
            while j < len(s) and s[j] != c:
                j += 2 if c == '"' and s[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            state.depth += 1
        elif c in "]}":
            state.depth = max(0, state.depth - 1)
        i += 1
