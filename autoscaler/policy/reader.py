"""Reading policy files so that no file can crash, hang or exhaust the process that reads it.

A policy file is untrusted input: the service reads whatever lands in its ConfigMap, next to every other
team's files. So reading is bounded at each step, and each refusal is a ``(line, message)``, never an
exception:

* the file: a regular file (``os.open`` non-blocking, then ``fstat``: a device such as ``/dev/zero`` or a
  FIFO is refused before any read), at most :data:`MAX_FILE_BYTES`, UTF-8, without NUL or other control
  characters (YAML forbids them; PyYAML raised on them before reading any document);
* the YAML: composed from parser events by :func:`compose`, iteratively (no recursion to exhaust), with
  at most :data:`MAX_DOCUMENTS` documents, :data:`MAX_DEPTH` levels of nesting, :data:`MAX_ALIASES`
  aliases and :data:`MAX_NODES` values *with every alias expanded* (a 676-byte "billion laughs" file
  stops there instead of reaching gigabytes; anything that later walks the data is bounded the same),
  no recursive or duplicate anchors, scalars of at most :data:`MAX_SCALAR_CHARS`, integers of at most
  :data:`MAX_INT_DIGITS` digits (Python refuses to parse 4300+), and only the plain YAML types.

The limits are far above any real policy file (the shipped ones: 2 KB, 6 levels, ~60 values).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "MAX_FILE_BYTES",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "MAX_SCALAR_CHARS",
    "Composed",
    "DuplicateKey",
    "ReadRefused",
    "compose",
    "read_text",
]

MAX_FILE_BYTES = 1 << 20
"""1 MiB: a ConfigMap (the service's policy directory) cannot hold more in total."""
MAX_DOCUMENTS = 1000
"""Documents per file (a 1 MiB file of small policies holds ~1000)."""
MAX_DEPTH = 32
"""Nesting levels, aliases expanded; a policy needs 7."""
MAX_NODES = 100_000
"""Values per file with every alias expanded: a 1 MiB file of real policies has ~80,000; composing
100,000 takes ~0.8 s (a dense 1 MiB flow list would be 500,000)."""
MAX_ALIASES = 1000
"""Alias uses (``*name``) per file."""
MAX_SCALAR_CHARS = 65536
"""Characters of one value; the schema allows 16384 for any string field."""
MAX_INT_DIGITS = 64
"""Characters of an integer (Python refuses to parse more than 4300 digits, and str() of a huge hex one
fails the same way); every number in the schema is bounded far below."""

FieldPath = tuple[str | int, ...]

# What YAML 1.1 allows in a stream (PyYAML's reader check): tab, newlines and printable Unicode.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CHAR_NAMES = {0: "NUL", 0x0C: "form feed", 0x0B: "vertical tab", 0x1B: "escape", 0x7F: "DEL", 0x08: "backspace"}

_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE, _MAP, _SEQ = (
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "merge", "map", "seq")
)
_SCALAR_TAGS = frozenset((_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP))
_LOADER = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


class ReadRefused(Exception):
    """Why a file is not read, at a line (None: the file as a whole)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(line, message)
        self.line, self.message = line, message


def read_text(path: Path) -> str:
    """The file's text, or :class:`ReadRefused`. Never blocks on a FIFO, never reads a device."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ReadRefused(None, f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadRefused(None, f"cannot read file: not a regular file ({_file_type(info.st_mode)})")
        if info.st_size > MAX_FILE_BYTES:
            raise ReadRefused(None, f"file is {info.st_size} bytes; a policy file may have at most {MAX_FILE_BYTES}")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:  # the size may change after fstat: read at most one byte more
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise ReadRefused(None, f"file is over {MAX_FILE_BYTES} bytes; a policy file may have at most that")
    except OSError as exc:
        raise ReadRefused(None, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ReadRefused(line, f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}") from None
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        code = ord(bad.group())
        name = _CHAR_NAMES.get(code, "a control character" if code < 0x20 or 0x7F <= code < 0xA0 else "not allowed")
        raise ReadRefused(line, f"character U+{code:04X} ({name}) at column {column}: policy files are plain text")
    return text


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@dataclass(slots=True)
class Composed:
    """One document: its index in the file, its plain data and the line of every field path."""

    index: int
    data: Any
    lines: dict[FieldPath, int]


class DuplicateKey(ReadRefused):
    """A key twice in one mapping (YAML says keys are unique; PyYAML would keep the last silently)."""

    def __init__(self, path: FieldPath, line: int) -> None:
        super().__init__(line, "duplicate key")
        self.path = path


@dataclass(slots=True)
class _Value:
    data: Any
    size: int  # values in it, aliases expanded
    height: int  # nesting levels in it, aliases expanded (a scalar: 0)


@dataclass(slots=True)
class _Frame:
    """A mapping or sequence being composed."""

    is_map: bool
    path: FieldPath
    line: int
    anchor: str | None
    items: list[Any] = field(default_factory=list)
    mapping: dict[str, Any] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)
    key: str | None = None  # a mapping's key awaiting its value
    key_line: int = 0
    key_is_merge: bool = False
    size: int = 1
    height: int = 1


def compose(text: str) -> Iterator[Composed]:
    """The documents of ``text`` as plain data (dicts with string keys, lists, scalars), one at a time;
    :class:`ReadRefused` (or ``yaml.YAMLError`` for a syntax error) at the first problem."""
    loader = _LOADER(text)
    budget = _Budget()
    try:
        index = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                if index >= MAX_DOCUMENTS:
                    raise ReadRefused(_line(event), f"more than {MAX_DOCUMENTS} documents in one file: split it")
                composer = _Composer(loader, budget)
                data = composer.document()
                if data is not None:
                    yield Composed(index, data, composer.lines)
                index += 1
    finally:
        loader.dispose()


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


class _Budget:
    """What one file may cost, all its documents together."""

    def __init__(self) -> None:
        self.nodes = 0
        self.aliases = 0

    def add(self, count: int, line: int) -> None:
        self.nodes += count
        if self.nodes > MAX_NODES:
            raise ReadRefused(line, f"more than {MAX_NODES} values with aliases expanded (an alias bomb?): split it")

    def alias(self, line: int) -> None:
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise ReadRefused(line, f"more than {MAX_ALIASES} aliases in one file")


class _Composer:
    """One document from parser events, with an explicit stack: PyYAML's composer and constructor
    recurse (a RecursionError at ~1000 levels) and expand aliases as they go (an alias bomb)."""

    def __init__(self, loader: Any, budget: _Budget) -> None:
        self.loader = loader
        self.budget = budget
        self.anchors: dict[str, _Value] = {}
        self.open_anchors: set[str] = set()  # anchors on collections still being composed
        self.lines: dict[FieldPath, int] = {}
        self.stack: list[_Frame] = []
        self.root: _Value | None = None

    def document(self) -> Any:
        """Compose the events after a DocumentStart, through its DocumentEnd; the document's data."""
        while True:
            event = self.loader.get_event()
            line = _line(event)
            if isinstance(event, yaml.DocumentEndEvent):
                return self.root.data if self.root is not None else None
            if isinstance(event, yaml.AliasEvent):
                self._alias(str(event.anchor), line)
                continue
            anchor: str | None = getattr(event, "anchor", None)
            if anchor is not None and (anchor in self.anchors or anchor in self.open_anchors):
                raise ReadRefused(line, f"duplicate anchor &{anchor}")
            if isinstance(event, yaml.ScalarEvent):
                self._scalar(event, anchor, line)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                self._start(event, anchor, line)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                self._end(line)
            else:  # pragma: no cover - the parser emits nothing else inside a document
                raise ReadRefused(line, f"unexpected YAML event {type(event).__name__}")

    def _awaiting_key(self) -> bool:
        return bool(self.stack) and self.stack[-1].is_map and self.stack[-1].key is None

    def _child_path(self) -> FieldPath:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.is_map:
            return (*top.path, top.key) if top.key is not None else top.path
        return (*top.path, len(top.items))

    def _alias(self, name: str, line: int) -> None:
        if name in self.open_anchors:
            raise ReadRefused(line, f"recursive alias *{name}: an anchor cannot contain itself")
        found = self.anchors.get(name)
        if found is None:
            raise ReadRefused(line, f"undefined alias *{name}")
        self.budget.alias(line)
        self.budget.add(found.size, line)
        if self._awaiting_key():
            if found.height:
                raise ReadRefused(line, "a mapping key must be a plain value, not a mapping or list")
        else:
            self.lines[self._child_path()] = line
        self._attach(found, line)

    def _scalar(self, event: yaml.ScalarEvent, anchor: str | None, line: int) -> None:
        self.budget.add(1, line)
        tag, data = _construct(self.loader, event, line)
        value = _Value(data, 1, 0)
        if anchor is not None:
            self.anchors[anchor] = value
        if not self._awaiting_key():
            self.lines[self._child_path()] = line
            self._attach(value, line)
        else:
            self._attach(value, line, is_merge_key=tag == _MERGE)

    def _start(self, event: yaml.CollectionStartEvent, anchor: str | None, line: int) -> None:
        self.budget.add(1, line)
        is_map = isinstance(event, yaml.MappingStartEvent)
        if self._awaiting_key():
            raise ReadRefused(line, "a mapping key must be a plain value, not a mapping or list")
        if len(self.stack) >= MAX_DEPTH:
            raise ReadRefused(line, f"nested more than {MAX_DEPTH} levels deep")
        if event.tag not in (None, "!", _MAP if is_map else _SEQ):
            raise ReadRefused(line, f"unsupported tag {event.tag}: policy files use plain mappings and lists")
        path = self._child_path()
        self.lines[path] = line
        if anchor is not None:
            self.open_anchors.add(anchor)
        self.stack.append(_Frame(is_map, path, line, anchor))

    def _end(self, line: int) -> None:
        frame = self.stack.pop()
        data: Any = frame.items
        if frame.is_map:
            data = {}
            for source in reversed(frame.merges):  # of several merged mappings, the first wins
                data.update(source)
            data.update(frame.mapping)  # and the mapping's own keys over any merged one
        value = _Value(data, frame.size, frame.height)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = value
        self._attach(value, frame.line)

    def _attach(self, value: _Value, line: int, *, is_merge_key: bool = False) -> None:
        """Put a finished value where it belongs: the document root, a list item, a key or a value."""
        if len(self.stack) + value.height > MAX_DEPTH:
            raise ReadRefused(line, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)")
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        top.size += value.size
        top.height = max(top.height, value.height + 1)
        if not top.is_map:
            top.items.append(value.data)
        elif top.key is None:  # the value is a key
            top.key = value.data if isinstance(value.data, str) else str(value.data)
            top.key_line, top.key_is_merge = line, is_merge_key
        elif top.key_is_merge:
            sources = value.data if isinstance(value.data, list) else [value.data]
            if not all(isinstance(source, dict) for source in sources):
                raise ReadRefused(top.key_line, "a merge key (<<) takes a mapping or a list of mappings")
            top.merges.extend(sources)
            top.key = None
        else:
            if top.key in top.mapping:
                raise DuplicateKey((*top.path, top.key), top.key_line)
            top.mapping[top.key] = value.data
            self.lines[(*top.path, top.key)] = top.key_line
            top.key = None


def _construct(loader: Any, event: yaml.ScalarEvent, line: int) -> tuple[str, Any]:
    """A scalar's tag and value, with PyYAML's safe resolution, limited to the plain YAML types."""
    text = event.value
    if len(text) > MAX_SCALAR_CHARS:
        raise ReadRefused(line, f"a value of {len(text)} characters; at most {MAX_SCALAR_CHARS} are allowed")
    explicit = event.tag not in (None, "!")
    tag = str(event.tag) if explicit else str(loader.resolve(yaml.ScalarNode, text, event.implicit))
    if tag == _MERGE and not explicit:
        return tag, text
    if tag not in _SCALAR_TAGS or (explicit and tag == _TIMESTAMP):
        raise ReadRefused(line, f"unsupported tag {tag}: policy files use plain strings, numbers and booleans")
    if tag == _STR:
        return tag, text  # what SafeConstructor does, without building a node (most values are strings)
    if tag == _INT and len(text.replace("_", "")) > MAX_INT_DIGITS:
        raise ReadRefused(line, f"an integer of {len(text)} characters: too large for any field")
    node = yaml.ScalarNode(tag, text, None, None, event.style)
    try:
        return tag, loader.yaml_constructors[tag](loader, node)
    except Exception as exc:  # PyYAML's constructors fail in many ways on odd text (an empty !!int: IndexError)
        kind = tag.rsplit(":", 1)[-1]
        raise ReadRefused(line, f"invalid {kind} {text[:40]!r}: {exc}") from None
