"""The destinations file: a valid one, and every kind of error as file:line: path: reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadpulse.streams.delivery.config import (
    DEFAULT_SCHEDULE,
    DestinationsError,
    load_destinations,
    parse_destinations,
    redact,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOOD = f"""\
allow_hosts: [hooks.slack.com, crm.example.com]
destinations:
  - name: crm
    url: https://crm.example.com/hooks/leadpulse
    secret: {SECRET}
    messages: [handoffs]
    min_grade: B
    format: json
    timeout: 10s
    retry_schedule: [0s, 5s, 5m, 30m, 2h, 5h, 10h, 10h]
  - name: sales-channel
    url: https://hooks.slack.com/services/T000/B000/XXXX
    format: slack
    messages: [handoffs, transitions]
"""


def errors(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(DestinationsError) as info:
        parse_destinations(text, "dest.yaml", environ or {})
    return info.value.issues


def test_the_contract_example_loads() -> None:
    loaded = parse_destinations(GOOD, "dest.yaml")
    crm, slack = loaded.destinations
    assert crm.name == "crm"
    assert crm.host == "crm.example.com"
    assert crm.timeout == 10
    assert crm.retry_schedule == DEFAULT_SCHEDULE
    assert crm.min_grade == "B"
    assert len(crm.keys) == 1
    assert crm.wants("handoffs", "A")
    assert crm.wants("handoffs", "B")
    assert not crm.wants("handoffs", "C")
    assert not crm.wants("transitions", "A")
    assert slack.format == "slack"
    assert (crm.concurrency, slack.concurrency) == (32, 1)
    assert slack.keys == ()
    assert loaded.kinds == {"handoffs", "transitions"}
    assert SECRET not in repr(crm)


def test_secrets_from_the_environment_and_rotation() -> None:
    text = GOOD.replace(f"secret: {SECRET}", "secret: ['${CRM_NEW}', " + SECRET + "]")
    loaded = parse_destinations(text, "dest.yaml", {"CRM_NEW": SECRET.replace("Mf", "Ab")})
    assert len(loaded.destinations[0].keys) == 2
    text = GOOD.replace(f"secret: {SECRET}", "secret_env: CRM_SECRET")
    loaded = parse_destinations(text, "dest.yaml", {"CRM_SECRET": SECRET})
    assert len(loaded.destinations[0].keys) == 1


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(DestinationsError, match=r"missing\.yaml: cannot read"):
        load_destinations(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("min_grade: B", "min_grade: b"), "dest.yaml:7: destinations[0].min_grade: String should"),
        (("format: json", "format: xml"), "dest.yaml:8: destinations[0].format: Input should be"),
        (("timeout: 10s", "timeout: 10"), "dest.yaml:9: destinations[0].timeout: duration 10 has"),
        (("5m, 30m", "5 minutes, 30m"), "dest.yaml:10: destinations[0].retry_schedule[2]:"),
        (("[handoffs]", "[handoff]"), "dest.yaml:6: destinations[0].messages[0]: Input should be"),
        (
            ("    format: slack\n", "    format: slack\n    colour: red\n"),
            "dest.yaml:14: destinations[1].colour: Extra inputs are not permitted",
        ),
        (
            ("https://crm.example.com/hooks", "https://evil.example.net/hooks"),
            "dest.yaml:4: destinations[0].url: host 'evil.example.net' is not in allow_hosts",
        ),
        (
            ("https://crm.example.com/hooks", "http://crm.example.com/hooks"),
            "dest.yaml:4: destinations[0].url: url 'http://crm.example.com/…': "
            "plain http is allowed only",
        ),
        (
            (f"secret: {SECRET}", "secret: hunter2-hunter2"),
            "dest.yaml:5: destinations[0].secret: a secret must start with 'whsec_'",
        ),
        (
            (f"secret: {SECRET}", "secret: ${NOT_SET}"),
            "dest.yaml:5: destinations[0].secret: environment variable NOT_SET is not set",
        ),
        (
            (f"    secret: {SECRET}\n", ""),
            "dest.yaml:3: destinations[0]: a json destination needs a secret",
        ),
        (("name: sales-channel", "name: crm"), "dest.yaml:11: destinations[1].name: name 'crm'"),
        (("name: crm", "name: CRM!"), "dest.yaml:3: destinations[0].name: String should match"),
        (("    min_grade: B\n", "    min_grade: B\n    min_grade: A\n"), "dest.yaml:8: key"),
        (("destinations:", "destinations: [\n"), "dest.yaml:"),
    ],
)
def test_errors_name_file_line_and_reason(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    found = errors(GOOD.replace(old, new, 1))
    assert any(issue.startswith(expected) for issue in found), found
    assert all("MfKQ9r8" not in issue and "hunter2" not in issue for issue in found)


def test_an_empty_file_and_a_list_are_refused() -> None:
    assert errors("") == ["dest.yaml:1: the destinations file is empty"]
    assert errors("- a\n- b\n")[0].startswith("dest.yaml:1: expected a mapping")
    assert errors("allow_hosts: []\n") == ["dest.yaml:1: destinations: Field required"]


def test_http_is_allowed_only_to_a_listed_ip_literal() -> None:
    text = (
        "allow_hosts: [127.0.0.1]\ndestinations:\n"
        f"  - {{name: local, url: 'http://127.0.0.1:9999/hook', secret: {SECRET}}}\n"
    )
    assert parse_destinations(text).destinations[0].host == "127.0.0.1"
    assert errors(text.replace("[127.0.0.1]", "[localhost]"))[0].startswith(
        "dest.yaml:3: destinations[0].url: host '127.0.0.1' is not in allow_hosts"
    )


def test_wildcard_entries_cover_subdomains_only() -> None:
    text = (
        "allow_hosts: ['*.example.com']\ndestinations:\n"
        f"  - {{name: a, url: 'https://eu.crm.example.com/h', secret: {SECRET}}}\n"
    )
    assert parse_destinations(text).destinations[0].host == "eu.crm.example.com"
    assert "not in allow_hosts" in errors(text.replace("eu.crm.example.com", "example.com"))[0]


@pytest.mark.parametrize(
    ("allow", "url", "expected"),
    [
        (
            "['2130706433']",
            "http://127.0.0.1:9/h",
            "dest.yaml:1: allow_hosts[0]: '2130706433' is the address 127.0.0.1 written another "
            "way; write 127.0.0.1",
        ),
        (
            "[127.0.0.1]",
            "http://0x7F.0.0.1:9/h",
            "dest.yaml:3: destinations[0].url: url host '0x7f.0.0.1' is the address 127.0.0.1 "
            "written another way; write 127.0.0.1",
        ),
        (
            "[127.0.0.1]",
            "http://127.1:9/h",
            "dest.yaml:3: destinations[0].url: url host '127.1' is the address 127.0.0.1 "
            "written another way; write 127.0.0.1",
        ),
        (
            "[127.0.0.1]",
            "http://127.0.0.1:99999/services/T000/B000/XXXXSECRET",
            "dest.yaml:3: destinations[0].url: url 'http://127.0.0.1:99999/…': the port must be "
            "a number from 0 to 65535",
        ),
        (
            "[hooks.slack.com]",
            "ftp://hooks.slack.com/services/T000/B000/XXXXSECRET",
            "dest.yaml:3: destinations[0].url: url 'ftp://hooks.slack.com/…' must be "
            "https://HOST/...",
        ),
        (
            "['*.0.0.1']",
            "https://127.0.0.1/h",
            "dest.yaml:3: destinations[0].url: host '127.0.0.1' is not in allow_hosts",
        ),
    ],
)
def test_hosts_ports_and_schemes_are_checked_and_the_path_never_shown(
    allow: str, url: str, expected: str
) -> None:
    text = f"allow_hosts: {allow}\ndestinations:\n  - {{name: a, url: '{url}', secret: {SECRET}}}\n"
    assert errors(text) == [expected]


def test_a_listed_ipv6_literal_is_compared_as_an_address() -> None:
    text = (
        "allow_hosts: ['[::FFFF:7F00:1]']\ndestinations:\n"
        f"  - {{name: a, url: 'http://[::ffff:127.0.0.1]:9/h', secret: {SECRET}}}\n"
    )
    loaded = parse_destinations(text)
    assert loaded.allow_hosts == {"::ffff:7f00:1"}
    assert loaded.destinations[0].host == "::ffff:127.0.0.1"


def test_a_destination_shows_its_name_and_origin_never_its_path_query_or_secret() -> None:
    text = (
        "allow_hosts: [hooks.slack.com, crm.example.com]\ndestinations:\n"
        "  - {name: sales, url: 'https://hooks.slack.com/services/T000/B000/XXXXSECRET', "
        "format: slack}\n"
        f"  - {{name: crm, url: 'https://crm.example.com:8443/in?token=abc', secret: {SECRET}}}\n"
    )
    loaded = parse_destinations(text)
    slack, crm = loaded.destinations
    assert repr(slack) == (
        "Destination(name='sales', origin='https://hooks.slack.com', format='slack')"
    )
    assert str(slack) == "sales (https://hooks.slack.com)"
    assert repr(crm) == (
        "Destination(name='crm', origin='https://crm.example.com:8443', format='json')"
    )
    assert str(crm) == "crm (https://crm.example.com:8443)"
    everything = f"{slack!r} {slack} {crm!r} {crm} {loaded!r}"
    for secret in ("XXXXSECRET", "/services/", "token=abc", SECRET, "MfKQ9r8"):
        assert secret not in everything


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Connection timeout to host https://hooks.slack.com/services/T000/B000/XXXXSECRET",
            "Connection timeout to host https://hooks.slack.com/…",
        ),
        ("POST /services/T000/B000/XXXXSECRET failed", "POST /… failed"),
        ("see https://hooks.slack.com/ and a/b/c", "see https://hooks.slack.com/ and a/b/c"),
    ],
)
def test_redact_keeps_the_origin_only(text: str, expected: str) -> None:
    assert redact(text, "https://hooks.slack.com/services/T000/B000/XXXXSECRET") == expected
    assert redact(text, "https://hooks.slack.com/") == text
