"""Edit a policy file's text in place: set tuned values, keep everything else (layout, comments,
other documents) exactly as the team wrote it, and mark each change with a comment.

PyYAML drops comments when it dumps, so the file is not re-dumped: its nodes give the position of
every value, a changed scalar is replaced where it stands, and a value the file does not state (a
default: the HPA's stabilization window, a field from ``PolicyDefaults``) is inserted into the
nearest mapping the file has, in the mapping's own style (a block's indentation, or a flow mapping
rewritten in flow style). A list the file does not state is inserted whole (the loader replaces
lists whole, so a partial one would drop the other items). An existing trailing comment on a changed
line described the old value, so it is kept after ours, marked ``was:``.

:func:`set_values` checks its own work: the edited text, parsed, must equal the original document
with exactly the intended values set; otherwise it returns ``None`` and the caller writes the
effective document instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from autoscaler.tune.space import step_into

__all__ = ["Edit", "set_values"]

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Edit:
    """Set ``path`` to ``value``; ``comment`` goes at the end of the line that now holds it.
    ``effective`` is the whole effective document with the value set: where the file lacks a list on
    the path, the list is taken from it."""

    path: Path
    value: Any
    comment: str
    effective: Mapping[str, Any]


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.split("\n...")[0].strip()


def _documents(text: str) -> list[yaml.Node]:
    return [node for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node is not None]


def _find_document(nodes: Sequence[yaml.Node], name: str) -> int | None:
    for i, node in enumerate(nodes):
        if not isinstance(node, yaml.MappingNode):
            continue
        data = yaml.safe_load(yaml.serialize(node))
        if isinstance(data, dict) and data.get("kind") == "ScalingPolicy" and \
                isinstance(data.get("metadata"), dict) and data["metadata"].get("name") == name:
            return i
    return None


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def _line_bounds(text: str, index: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return start, len(text) if end < 0 else end


def _comment_start(line: str, after: int) -> int | None:
    """Where a trailing comment starts on ``line`` at or after column ``after`` (outside quotes)."""
    quote: str | None = None
    for i in range(after, len(line)):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def _annotate(text: str, index: int, after_col: int, comment: str) -> str:
    """Put ``# comment`` at the end of the line holding ``index``; an existing comment stays after it
    (ours are joined with ``;``, the team's is kept as ``was: ...``)."""
    start, end = _line_bounds(text, index)
    line = text[start:end]
    at = _comment_start(line, max(0, after_col))
    if at is None:
        new = line.rstrip() + "  # " + comment
    else:
        old = line[at + 1:].strip()
        body = line[:at].rstrip()
        new = f"{body}  # {old}; {comment}" if old.startswith("tuned:") else f"{body}  # {comment}; was: {old}"
    return text[:start] + new + text[end:]


def _dotted(parts: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _lookup(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def _nest(keys: Sequence[str | int], leaf: Any) -> Any:
    for key in reversed(keys):
        leaf = {key: leaf}
    return leaf


def _apply(text: str, index: int, edit: Edit) -> str:
    document = _documents(text)[index]
    node: yaml.Node = document
    depth = 0
    for part in edit.path:
        child = _child(node, part)
        if child is None:
            break
        node, depth = child, depth + 1
    if depth == len(edit.path):
        if not isinstance(node, yaml.ScalarNode):
            raise ValueError(f"{edit.path}: not a scalar in the file")
        start, end = node.start_mark.index, node.end_mark.index
        text = text[:start] + _scalar(edit.value) + text[end:]
        line_start, _ = _line_bounds(text, start)
        return _annotate(text, start, start - line_start + len(_scalar(edit.value)), edit.comment)
    if not isinstance(node, yaml.MappingNode):
        raise ValueError(f"{edit.path[:depth]}: the file has no mapping to insert into")
    rest = list(edit.path[depth:])
    comment = edit.comment
    if any(isinstance(p, int) for p in rest):  # a list the file lacks: insert it whole, from the effective one
        cut = next(i for i, p in enumerate(rest) if isinstance(p, int))
        comment = comment.replace("tuned:", f"tuned {_dotted(rest[cut:])}:", 1)
        rest = rest[:cut]
        value = copy.deepcopy(_lookup(edit.effective, edit.path[:depth + cut]))
    else:
        value = edit.value
    addition = _nest(rest, value)
    if node.flow_style or not node.value:
        current = yaml.safe_load(text[node.start_mark.index:node.end_mark.index]) or {}
        merged = _merge(current, addition)
        flow = yaml.safe_dump(merged, default_flow_style=True, width=10_000, sort_keys=False).strip()
        start = node.start_mark.index
        text = text[:start] + flow + text[node.end_mark.index:]
        line_start, _ = _line_bounds(text, start)
        return _annotate(text, start, start - line_start + len(flow), comment)
    indent = node.value[0][0].start_mark.column
    block = yaml.safe_dump(addition, default_flow_style=False, sort_keys=False, indent=2, width=10_000)
    lines = [" " * indent + line for line in block.rstrip("\n").split("\n")]
    leaf_key = str(rest[-1])
    leaf = max(i for i, line in enumerate(lines) if line.lstrip().startswith(f"{leaf_key}:"))
    lines[leaf] = lines[leaf].rstrip() + "  # " + comment
    _, line_end = _line_bounds(text, _content_end(node))
    insertion = "\n".join(lines)
    if line_end >= len(text):
        return text + ("" if text.endswith("\n") else "\n") + insertion + "\n"
    return text[:line_end] + "\n" + insertion + text[line_end:]


def _content_end(node: yaml.Node) -> int:
    """The index of the last character of ``node``'s content (a block collection's end mark lies at the
    next token, possibly lines below, so descend to its last scalar or flow collection)."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        end -= 1  # a block scalar ends after its last line break
    return max(end - 1, node.start_mark.index)


def _merge(base: Any, add: Any) -> Any:
    if isinstance(base, dict) and isinstance(add, dict):
        out = dict(base)
        for key, value in add.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return add


def _expected(original: Any, edits: Sequence[Edit]) -> Any:
    data = copy.deepcopy(original)
    for edit in edits:
        node = data
        for i, part in enumerate(edit.path[:-1]):
            nxt = step_into(node, part)
            if nxt is None:
                following = edit.path[i + 1]
                if isinstance(following, int):  # the whole list from the effective document
                    node[part] = copy.deepcopy(_lookup(edit.effective, edit.path[:i + 1]))
                    nxt = node[part]
                else:
                    nxt = node[part] = {}
            node = nxt
        node[edit.path[-1]] = edit.value
    return data


def set_values(text: str, policy_name: str, edits: Sequence[Edit], header: str = "") -> str | None:
    """The file's text with every edit applied and commented, or None when that cannot be done
    faithfully (the caller then writes the effective document)."""
    try:
        nodes = _documents(text)
        index = _find_document(nodes, policy_name)
        if index is None:
            return None
        original = [d for d in yaml.safe_load_all(text) if d is not None]
        edited = text
        for edit in edits:
            edited = _apply(edited, index, edit)
        after = [d for d in yaml.safe_load_all(edited) if d is not None]
    except (yaml.YAMLError, ValueError, KeyError, IndexError, TypeError):
        return None
    wanted = list(original)
    wanted[index] = _expected(original[index], edits)
    if after != wanted:
        return None
    if header:
        edited = "".join(f"# {line}".rstrip() + "\n" for line in header.split("\n")) + edited
    return edited
