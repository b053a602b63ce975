"""The destinations file (``LEADPULSE_DESTINATIONS_FILE``): where handoffs go, validated.

Validated like the model file: every problem is one ``file:line: path: reason``
line, YAML duplicate keys included, and a secret's value is never shown.

```yaml
allow_hosts: [hooks.slack.com, crm.example.com]
destinations:
  - name: crm
    url: https://crm.example.com/hooks/leadpulse
    secret: whsec_...            # or a list (key rotation), or ${ENV_VAR}; or secret_env: VAR
    messages: [handoffs]         # handoffs | transitions
    min_grade: B
    format: json                 # json | slack
    timeout: 10s
    retry_schedule: [0s, 5s, 5m, 30m, 2h, 5h, 10h, 10h]
    concurrency: 32              # requests in flight (default 32; 1 for slack)
```

Rules beyond the shape: every destination's host is in `allow_hosts` (exactly,
or under a ``*.example.com`` entry; `streams.delivery.addresses` says which
addresses are then reached); an IPv4 literal is written as a dotted quad
(``127.1`` or ``2130706433`` is refused with the spelling to use); ``https`` is
required except for a host that is an IP literal named in `allow_hosts`
(``127.0.0.1`` in tests); a ``json`` destination needs a secret (Slack's
incoming webhooks carry their own token in the URL, a secret is optional there).

A destination is shown (repr, logs, errors) by its name and `origin`, never
its URL's path or query: a Slack webhook's path is its secret.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike, fspath
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from leadpulse.schemas.delivery import MessageKind
from leadpulse.scoring import parse_duration
from leadpulse.streams.delivery.addresses import RefusedError, canonical_host, check_host, ip_of
from leadpulse.streams.delivery.signing import SecretError, secret_key

DEFAULT_SCHEDULE: Final = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Svix's: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""
DEFAULT_CONCURRENCY: Final = {"json": 32, "slack": 1}
"""Requests in flight per destination unless `concurrency` says otherwise; Slack takes
about one message per second per incoming webhook, so one at a time there."""
NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ZERO = re.compile(r"^0+(?:\.0*)?[smhd]?$")


class DestinationsError(Exception):
    """Every problem of a destinations file, one ``file:line: path: reason`` each."""

    def __init__(self, issues: Sequence[str]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(self.issues))


def _delay(value: Any) -> float:
    """A duration (``5s``, ``2h``), or zero (``0s``: immediately)."""
    if isinstance(value, str) and _ZERO.match(value.strip()):
        return 0.0
    return parse_duration(value)


Delay = Annotated[float, BeforeValidator(_delay)]
Timeout = Annotated[float, BeforeValidator(parse_duration), Field(le=300)]


class DestinationSpec(BaseModel):
    """One destination as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: str | list[str] | None = None
    secret_env: str | None = None
    messages: Annotated[list[MessageKind], Field(min_length=1)] = ["handoffs"]
    min_grade: Annotated[str, Field(pattern=r"^[A-Z]$")] | None = None
    format: Literal["json", "slack"] = "json"
    timeout: Timeout = 10.0
    retry_schedule: Annotated[list[Delay], Field(min_length=1, max_length=50)] = list(
        DEFAULT_SCHEDULE
    )
    concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = []
    destinations: Annotated[list[DestinationSpec], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Destination:
    """A validated destination; `keys` are the HMAC keys of its secrets (newest first)."""

    name: str
    url: str
    host: str
    keys: tuple[bytes, ...]
    messages: frozenset[str]
    min_grade: str | None
    format: Literal["json", "slack"]
    timeout: float
    retry_schedule: tuple[float, ...]
    concurrency: int

    def wants(self, kind: str, grade: str) -> bool:
        """Whether a message of `kind` with `grade` goes here (grades: A best)."""
        if kind not in self.messages:
            return False
        return self.min_grade is None or grade.upper() <= self.min_grade

    @property
    def origin(self) -> str:
        return origin(self.url)

    def __repr__(self) -> str:  # never the keys, the path or the query
        return f"Destination(name={self.name!r}, origin={self.origin!r}, format={self.format!r})"

    def __str__(self) -> str:
        return f"{self.name} ({self.origin})"


@dataclass(frozen=True, slots=True)
class Destinations:
    allow_hosts: frozenset[str]
    destinations: tuple[Destination, ...]
    source: str

    def named(self, name: str) -> Destination:
        for destination in self.destinations:
            if destination.name == name:
                return destination
        known = ", ".join(d.name for d in self.destinations)
        raise KeyError(f"no destination named {name!r} in {self.source} (there are: {known})")

    @property
    def kinds(self) -> frozenset[str]:
        """The message kinds some destination wants (the topics to consume)."""
        return frozenset(k for d in self.destinations for k in d.messages)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of `url`: what may be shown of it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}" if host else "(no host)"


def shown(url: str) -> str:
    """`url` as it may appear in a message: its origin, and ``/…`` for whatever follows."""
    return origin(url) + ("/…" if url.rstrip("/") != origin(url) else "")


def redact(text: str, *urls: str) -> str:
    """`text` with each of `urls`, and what follows its host, replaced by what may be
    shown of it."""
    for url in urls:
        netloc = urlsplit(url).netloc
        tail = url[url.find(netloc) + len(netloc) :] if netloc else url
        if len(tail) > 1:  # a lone "/" hides nothing
            text = text.replace(url, shown(url)).replace(tail, "/…")
    return text


def load_destinations(
    path: str | PathLike[str], environ: Mapping[str, str] | None = None
) -> Destinations:
    """Read and validate a destinations file; DestinationsError lists every problem."""
    name = fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise DestinationsError(
            [f"{name}: cannot read the destinations file ({exc.strerror})"]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DestinationsError([f"{name}:{line}: the file is not UTF-8 text"]) from None
    return parse_destinations(text, name, os.environ if environ is None else environ)


def parse_destinations(
    text: str, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> Destinations:
    """Validate destinations file text (pure but for `environ`, the ${VAR} lookups)."""
    env = environ if environ is not None else {}
    root, data = _compose(text, source)
    if not isinstance(root, yaml.MappingNode):
        raise DestinationsError(
            [f"{source}:{_line(root)}: expected a mapping with keys allow_hosts, destinations"]
        )
    try:
        spec = FileSpec.model_validate(data)
    except ValidationError as exc:
        shape: list[str] = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(p for p in error["loc"] if p not in ("str", "list[str]"))
            message = error["msg"].removeprefix("Value error, ")
            shape.append(_issue(root, source, loc, message))
        raise DestinationsError(sorted(dict.fromkeys(shape), key=_line_of)) from None
    allow = frozenset(canonical_host(h) for h in spec.allow_hosts)
    issues: list[str] = [
        _issue(root, source, ("allow_hosts", index), problem)
        for index, entry in enumerate(spec.allow_hosts)
        if (problem := _spelling_problem(entry))
    ]
    built: list[Destination] = []
    seen: set[str] = set()
    for index, d in enumerate(spec.destinations):
        at = ("destinations", index)
        if d.name in seen:
            issues.append(_issue(root, source, (*at, "name"), f"name {d.name!r} is used twice"))
        seen.add(d.name)
        host, problem = _url_problem(d.url, allow)
        if problem:
            issues.append(_issue(root, source, (*at, "url"), problem))
        keys, secret_problems = _keys(d, env)
        issues.extend(_issue(root, source, (*at, where), text) for where, text in secret_problems)
        if d.format == "json" and not keys and not secret_problems:
            issues.append(
                _issue(root, source, at, "a json destination needs a secret (or secret_env)")
            )
        built.append(
            Destination(
                name=d.name,
                url=d.url,
                host=host,
                keys=keys,
                messages=frozenset(d.messages),
                min_grade=d.min_grade,
                format=d.format,
                timeout=d.timeout,
                retry_schedule=tuple(d.retry_schedule),
                concurrency=d.concurrency or DEFAULT_CONCURRENCY[d.format],
            )
        )
    if issues:
        raise DestinationsError(sorted(issues, key=_line_of))
    return Destinations(allow, tuple(built), source)


def _url_problem(url: str, allow: frozenset[str]) -> tuple[str, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return host, f"url {shown(url)!r} must be https://HOST/..."
    if parts.username or parts.password:
        return host, "url must not carry a user or password (use secret)"
    try:
        parts.port  # noqa: B018 -- raises for a port that is not one
    except ValueError:
        return host, f"url {shown(url)!r}: the port must be a number from 0 to 65535"
    spelling = _spelling_problem(host)
    if spelling:
        return host, f"url host {spelling}"
    try:
        check_host(host, allow)
    except RefusedError as error:
        return host, str(error)
    if parts.scheme == "http" and ip_of(host) is None:
        return host, (
            f"url {shown(url)!r}: plain http is allowed only to an IP address named in "
            "allow_hosts; use https"
        )
    return host, ""


def _spelling_problem(host: str) -> str:
    """An IPv4 literal written other than as a dotted quad (the resolver reads ``127.1``,
    ``2130706433`` and ``0x7f.0.0.1`` as 127.0.0.1): which address it is."""
    address = ip_of(host)
    if isinstance(address, ipaddress.IPv4Address) and host != str(address):
        return f"{host!r} is the address {address} written another way; write {address}"
    return ""


def _keys(
    d: DestinationSpec, env: Mapping[str, str]
) -> tuple[tuple[bytes, ...], list[tuple[str, str]]]:
    written = [] if d.secret is None else [d.secret] if isinstance(d.secret, str) else d.secret
    secrets: list[tuple[str, str]] = []  # (where, value)
    problems: list[tuple[str, str]] = []
    for n, value in enumerate(written):
        where = "secret" if isinstance(d.secret, str) else f"secret[{n}]"
        reference = _ENV_REFERENCE.match(value.strip())
        if reference:
            variable = reference.group(1)
            if variable not in env:
                problems.append((where, f"environment variable {variable} is not set"))
            else:
                secrets.append((where, env[variable].strip()))
        else:
            secrets.append((where, value.strip()))
    if d.secret_env is not None:
        if d.secret_env not in env:
            problems.append(("secret_env", f"environment variable {d.secret_env} is not set"))
        else:
            secrets.extend(("secret_env", s.strip()) for s in env[d.secret_env].split() if s)
    keys: list[bytes] = []
    for where, value in secrets:
        try:
            keys.append(secret_key(value))
        except SecretError as error:
            problems.append((where, str(error)))
    return tuple(keys), problems


# -- YAML with line numbers ---------------------------------------------------------------


def _compose(text: str, source: str) -> tuple[yaml.Node, object]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise DestinationsError([f"{source}:1: the destinations file is empty"])
        duplicates = _duplicate_keys(root, source)
        if duplicates:
            raise DestinationsError(duplicates)
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        line = min(line, max(1, len(text.splitlines())))
        raise DestinationsError(
            [f"{source}:{line}: YAML syntax error: {exc.problem or 'invalid YAML'}"]
        ) from None
    except yaml.YAMLError as exc:
        raise DestinationsError([f"{source}:1: YAML error: {exc}"]) from None
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node, source: str, depth: int = 0) -> list[str]:
    issues: list[str] = []
    if depth > 50:
        return [f"{source}:{_line(node)}: nested too deeply"]
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    issues.append(f"{source}:{_line(key)}: key {key.value!r} appears twice")
                seen.add(key.value)
            issues.extend(_duplicate_keys(value, source, depth + 1))
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            issues.extend(_duplicate_keys(child, source, depth + 1))
    return issues


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _node_at(root: yaml.Node, loc: Sequence[Any]) -> yaml.Node:
    """The deepest node on the path `loc` (a missing key points at its mapping)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node = value
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "file"


def _issue(root: yaml.Node, source: str, loc: Sequence[Any], message: str) -> str:
    return f"{source}:{_line(_node_at(root, loc))}: {_path(loc)}: {message}"


def _line_of(issue: str) -> tuple[int, str]:
    match = re.match(r"^.*?:(\d+): ", issue)
    return (int(match.group(1)) if match else 0, issue)
