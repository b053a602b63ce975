"""Model file text to `ScoringModel`, or a `ModelError` whose every issue names
the file, the line and the value to fix.

YAML is composed into a node tree first: the tree keeps line numbers (which
pydantic never sees) and reveals duplicate keys (which PyYAML silently drops).
Scalars follow YAML 1.2 rules for booleans and dates (only ``true``/``false``
are booleans, dates stay strings), so ``in: [US, NO]`` means Norway, not false.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Sequence
from importlib.resources import files
from os import PathLike, fspath
from types import UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from leadpulse.scoring.matchers import describe
from leadpulse.scoring.model import ModelSpec, Path, ScoringModel, TierRule, Tiers, semantic_issues

MAX_NODES: Final = 100_000
"""Counted with aliases expanded, so an alias bomb fails fast instead of hanging."""

_STR: Final = "tag:yaml.org,2002:str"
_BOOL: Final = "tag:yaml.org,2002:bool"
_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"
_MERGE: Final = "tag:yaml.org,2002:merge"


class ModelError(Exception):
    """Every problem found in a model file, one ``file:line: path: problem`` each."""

    def __init__(self, issues: Sequence[str]) -> None:
        self.issues: list[str] = list(issues)
        super().__init__("\n".join(self.issues))


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_model(path: str | PathLike[str]) -> ScoringModel:
    """The one function in scoring that touches the file system."""
    name = fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ModelError([f"{name}: cannot read the model file ({exc.strerror})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ModelError([f"{name}:{line}: the model file is not UTF-8 text"]) from None
    return parse_model(text, name)


@functools.cache
def default_model() -> ScoringModel:
    """The model shipped with leadpulse; see default_model.yaml for the reasoning."""
    text = files("leadpulse.scoring").joinpath("default_model.yaml").read_text(encoding="utf-8")
    return parse_model(text, "default_model.yaml")


def parse_model(text: str, source_name: str = "<string>") -> ScoringModel:
    """Validate model file text; pure, so tests and the CLI share it."""
    root, data = _compose(text, source_name)
    if not isinstance(root, yaml.MappingNode):
        raise ModelError(
            [
                f"{source_name}:{_line(root)}: the model file must be a mapping with keys "
                f"version, engagement, fit, lifecycle (got {_kind(root)})"
            ]
        )
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise ModelError(
            _sorted(_pydantic_issue(root, source_name, error) for error in exc.errors())
        ) from None
    semantic = semantic_issues(spec)
    if semantic:
        raise ModelError(_sorted(_issue(root, source_name, loc, text) for loc, text in semantic))
    return ScoringModel.from_spec(spec, source_name)


def _compose(text: str, source: str) -> tuple[yaml.Node, object]:
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # reads the first characters: may refuse one already
        root = loader.get_single_node()
        if root is None:
            raise ModelError([f"{source}:1: the model file is empty"])
        # Before construction, which flattens merge keys in place.
        issues = _size_issues(root, source) or _structure_issues(root, source)
        if issues:
            raise ModelError(issues)
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        last_line = max(1, len(text.splitlines()))  # errors at end of stream point past it
        line = min(mark.line + 1, last_line) if mark is not None else 1
        problem = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            problem = f"{exc.context} on line {exc.context_mark.line + 1}, {problem}"
        raise ModelError([f"{source}:{line}: YAML syntax error: {problem}"]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ModelError(
            [f"{source}:{line}: a character YAML does not allow ({what}): {exc.reason}"]
        ) from None
    except yaml.YAMLError as exc:
        raise ModelError([f"{source}:1: YAML error: {exc}"]) from None
    except RecursionError:
        raise ModelError([f"{source}:1: the model file is nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _size_issues(root: yaml.Node, source: str) -> list[str]:
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a cycle counts as nothing while in progress
            children: list[yaml.Node] = []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(size(child) for child in children))
        return sizes[id(node)]

    if size(root) > MAX_NODES:
        return [f"{source}:1: more than {MAX_NODES} values once aliases are expanded"]
    return []


def _structure_issues(root: yaml.Node, source: str) -> list[str]:
    """Duplicate and non-name keys, which construction would hide or mangle."""
    issues: list[str] = []
    visited: set[int] = set()

    def walk(node: yaml.Node, path: Path) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                where = f"{source}:{_line(key)}: {_render(path) or '(top level)'}"
                if key.tag == _MERGE:
                    issues.append(f"{where}: merge keys (<<) are not supported")
                    continue
                if not isinstance(key, yaml.ScalarNode) or key.tag != _STR:
                    shown = key.value if isinstance(key, yaml.ScalarNode) else _kind(key)
                    issues.append(f"{where}: keys must be names, got {shown}")
                    continue
                here = (*path, str(key.value))
                if key.value in first:
                    issues.append(
                        f"{source}:{_line(key)}: {_render(here)}: duplicate key "
                        f"'{key.value}' (first on line {first[key.value]})"
                    )
                else:
                    first[key.value] = _line(key)
                walk(value, here)

    walk(root, ())
    return issues


def _pydantic_issue(root: yaml.Node, source: str, error: ErrorDetails) -> tuple[int, str]:
    loc: Path = tuple(error["loc"])
    if loc and loc[-1] == "[key]":  # a mapping key that failed (events: names)
        loc = loc[:-1]
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return _issue(root, source, loc[:-1], f"missing required key '{loc[-1]}'")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        text = "unknown key"
        if allowed:
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            text = f"unknown key{hint} (allowed: {', '.join(sorted(allowed))})"
        return _issue(root, source, loc, text)
    if kind == "value_error":
        text = str(error.get("ctx", {}).get("error", error["msg"]))
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"expected a mapping, got {describe(given)}"
    elif kind in ("list_type", "tuple_type"):
        text = f"expected a list, got {describe(given)}"
    elif kind == "string_type":
        text = f"expected a string, got {describe(given)}"
    elif kind == "too_short":
        text = f"expected at least {error.get('ctx', {}).get('min_length', 1)} item(s)"
    elif kind == "string_too_short":
        text = "must not be empty"
    else:
        message = error["msg"]
        text = message[:1].lower() + message[1:]
    return _issue(root, source, loc, text)


def _issue(root: yaml.Node, source: str, loc: Path, text: str) -> tuple[int, str]:
    path, line = _locate(root, loc)
    return line, f"{source}:{line}: {path or '(top level)'}: {text}"


def _sorted(issues: Any) -> list[str]:
    return [text for _, text in sorted(issues, key=lambda item: item[0])]


def _locate(root: yaml.Node, loc: Path) -> tuple[str, int]:
    """The path as written in the file, and the line of its nearest existing node."""
    node: yaml.Node | None = root
    line = _line(root)
    parts: list[str | int] = []
    for step in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(step, int):
            continue  # a single condition written as a mapping, validated as [mapping]
        parts.append(step)
        if isinstance(node, yaml.MappingNode):
            pair = next((p for p in node.value if p[0].value == step), None)
            node = None if pair is None else pair[1]
            line = line if pair is None else _line(pair[0])
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            node = node.value[step] if step < len(node.value) else None
            line = line if node is None else _line(node)
        else:
            node = None
    return _render(tuple(parts)), line


def _render(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the value {node.value!r}" if node.value else "nothing"


def _allowed_keys(loc: Path) -> list[str] | None:
    """The keys the model class at `loc` accepts, for 'did you mean' hints."""
    current: Any = ModelSpec
    for step in loc:
        current = _strip(current)
        if isinstance(step, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == step), None
            )
            if field is not None:
                current = field.annotation
            elif current is Tiers:  # tier names are keys of their own choosing
                current = TierRule
            else:
                return None
        elif isinstance(step, int) and get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        elif isinstance(step, str) and get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _strip(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return None


def _strip(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
