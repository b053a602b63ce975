"""The design lives in the repository: docs/architecture.md and docs/domain.md.

Docstrings, tests and docs cite those (``docs/<file>.md#<anchor>``), never a
design file outside the repository; every cited anchor is a heading there; and
the architecture names what the code defines (topics, Redis key families,
process modules), read from the code so a new one cannot go undocumented.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
from pathlib import Path

import pytest

from leadpulse.streams.kafka.topics import topic_names
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis.keys import LEAD_KEY_KINDS, Keys

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"

# Design files that exist only outside the repository, spelled so that this
# file does not cite them itself: the briefs' upper-case names, their shared
# directory, and a document under a temporary directory.
OUTSIDE = re.compile(
    r"\b(?:ARCHITECTUR[E]|DOMAI[N]|INTEGRATION[S])\.md\b"
    r"|\.\./share[d]\b"
    r"|/work/share[d]\b"
    r"|(?<![\w.])/tm[p]/[^\s\"'`()<>]+/[^\s\"'`()<>]*\.(?:md|markdown|rst|txt|adoc|html|pdf)\b"
)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
"""A public address: what it names is not a file of this machine."""

CITATION = re.compile(r"(?<![\w/.-])docs/(?P<file>[\w.-]+\.md)#(?P<anchor>[\w-]+)")
LOCAL_LINK = re.compile(r"\]\((?P<file>[\w.-]+\.md)?#(?P<anchor>[\w-]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def tracked_text_files() -> dict[str, str]:
    """Every file git tracks that reads as text, by its path in the repository."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    texts: dict[str, str] = {}
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of every heading outside code fences, repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = HEADING.match(line)
        if fenced or match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match is not None, f"docs/architecture.md has no '## {title}' section"
    return match.group(1)


def test_slug_follows_githubs_rule() -> None:
    assert slug("Watermarks and stale exclusion") == "watermarks-and-stale-exclusion"
    assert slug("Tansu, the embedded broker") == "tansu-the-embedded-broker"
    assert slug("Feedback events: sales answers back") == "feedback-events-sales-answers-back"
    assert slug("`Keys.state` and due_shard") == "keysstate-and-due_shard"
    assert anchors("# A\n## B\n```\n# not a heading\n```\n## B\n") == {"a", "b", "b-1"}


def test_outside_citations_are_recognised() -> None:
    cited = [
        "see " + "ARCHITECTURE" + ".md",
        "(" + "DOMAIN" + ".md)",
        "../" + "shared/notes",
        "/" + "tmp/stackprobe/FINDINGS.md",
    ]
    kept = [
        "docs/architecture.md#layers",
        "a log at /" + "tmp/leadpulse-bench-x/worker-0.log",
        "https://example.com/" + "ARCHITECTURE" + ".md",
    ]
    assert [bool(OUTSIDE.search(URL.sub("", t))) for t in cited] == [True] * 4
    assert [bool(OUTSIDE.search(URL.sub("", t))) for t in kept] == [False] * 3


def test_no_tracked_file_cites_a_design_file_outside_the_repository() -> None:
    found = [
        f"{name}:{number}: {line.strip()}"
        for name, text in tracked_text_files().items()
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(URL.sub("", line))
    ]
    assert not found, (
        "cite docs/architecture.md#<heading> or docs/domain.md#<heading> instead:\n"
        + "\n".join(found)
    )


def test_every_cited_anchor_is_a_heading() -> None:
    texts = tracked_text_files()
    known: dict[str, set[str]] = {}

    def headings_of(relative: str) -> set[str] | None:
        if relative not in known:
            path = ROOT / relative
            known[relative] = anchors(path.read_text(encoding="utf-8")) if path.is_file() else set()
        return known[relative] if (ROOT / relative).is_file() else None

    broken: list[str] = []
    cited = 0
    for name, text in texts.items():
        for match in CITATION.finditer(text):
            cited += 1
            target = f"docs/{match['file']}"
            got = headings_of(target)
            if got is None or match["anchor"] not in got:
                broken.append(f"{name}: {match.group(0)}")
        if name.endswith(".md"):
            base = Path(name).parent
            for match in LOCAL_LINK.finditer(text):
                cited += 1
                target = (base / match["file"]).as_posix() if match["file"] else name
                got = headings_of(target)
                if got is None or match["anchor"] not in got:
                    broken.append(f"{name}: {match.group(0)}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)
    assert cited >= 10  # the code's own citations are among them


def test_architecture_names_every_topic() -> None:
    fields = [name for name in Settings.model_fields if name.endswith("_topic")]
    defaults = {name: Settings.model_fields[name].default for name in fields}
    assert set(topic_names(Settings.model_construct())) == set(defaults.values())
    assert "leadpulse.events" in defaults.values()
    topics = section(ARCHITECTURE.read_text(encoding="utf-8"), "Topics")
    missing = [
        f"{default} ({'LEADPULSE_' + name.upper()})"
        for name, default in defaults.items()
        if f"`{default}`" not in topics or f"`LEADPULSE_{name.upper()}`" not in topics
    ]
    assert not missing, f"docs/architecture.md#topics does not name: {', '.join(missing)}"


NOT_KEY_FAMILIES = {
    "due": "a lead's own due_shard key",
    "outbox_pattern": "a SCAN pattern over outbox keys",
    "legacy_pattern": "a SCAN pattern over keys an earlier release wrote",
    "legacy_moves": "the new name of a legacy key",
    "subject_of_outbox": "parses an outbox key",
    "subject_of_state": "parses a state key",
    "state_pattern": "a SCAN pattern over state keys",
    "namespace_patterns": "SCAN patterns over a namespace's keys (model gc)",
    "namespace_keys": "a namespace's fixed-name keys (model gc)",
}
"""Public members of `Keys` that name no key of their own."""


def key_families() -> dict[str, str]:
    """Every key family of `Keys`: member name -> the key with its arguments as ``<name>``."""
    keys = Keys("lp")
    fields = {f.name for f in dataclasses.fields(Keys)}
    families: dict[str, str] = {}
    for name in dir(Keys):
        if name.startswith("_") or name in fields or name in NOT_KEY_FAMILIES:
            continue
        member = inspect.getattr_static(Keys, name)
        if isinstance(member, property):
            value = getattr(keys, name)
        else:
            method = getattr(keys, name)
            params = inspect.signature(method).parameters
            value = method(*(f"<{p}>" for p in params))
        assert isinstance(value, str), name
        families[name] = value
    return families


def test_key_families_are_read_from_the_code() -> None:
    families = key_families()
    assert set(NOT_KEY_FAMILIES) <= set(dir(Keys))
    assert set(families) >= LEAD_KEY_KINDS
    assert families["state"] == "lp:{<lead>}:state"
    assert families["delivered"] == "lp:{dlv:<destination>}:done:<webhook_id>"


def test_architecture_names_every_redis_key_family() -> None:
    redis = section(ARCHITECTURE.read_text(encoding="utf-8"), "Redis keys")
    missing = [
        f"Keys.{name} ({key})"
        for name, key in sorted(key_families().items())
        if f"`Keys.{name}`" not in redis or f"`{key}`" not in redis
    ]
    assert not missing, f"docs/architecture.md#redis-keys does not name: {', '.join(missing)}"


def test_architecture_names_every_process_module() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    modules = sorted(
        p.stem for p in (ROOT / "streams" / "processes").glob("*.py") if p.stem != "__init__"
    )
    assert "worker" in modules
    missing = [
        name
        for name in modules
        if f"streams/processes/{name}.py" not in text and f"streams.processes.{name}" not in text
    ]
    unnamed = ", ".join(f"streams/processes/{m}.py" for m in missing)
    assert not missing, f"docs/architecture.md does not name {unnamed}"
