"""All runtime configuration, read from the environment once (prefix LEADPULSE_).

Settings are frozen and passed down explicitly; nothing below the CLI reads
the environment. Every path is made absolute when settings load (and when
`replace` derives new settings): `faust.Worker` changes the working
directory before it opens files, so a relative path would point elsewhere.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadpulse.scoring import parse_duration

PATH_FIELDS = (
    "model_file",
    "redis_tls_ca_file",
    "kafka_ssl_cafile",
    "data_dir",
    "destinations_file",
)
NEVER = frozenset({"never", "none", "off"})
"""What an optional duration (a TTL) takes in the environment for "no limit"."""
UNLIMITED = NEVER | {"unlimited"}
"""What `events_retention` takes for "keep every event"."""


class Settings(BaseSettings):
    """Worker settings; every field maps to LEADPULSE_<NAME> in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="LEADPULSE_", frozen=True, extra="forbid", env_file=None
    )

    app_id: str = Field("leadpulse", description="Faust app id = Kafka consumer group.")
    broker: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap URL(s), e.g. kafka://h1:9092;h2:9092.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (rediss:// = TLS).")
    redis_prefix: str = Field(
        "lp",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
        description=(
            "Every Redis key of this deployment starts with PREFIX: (1-32 letters, digits, "
            "'_', '.', '-'), so deployments sharing one Redis never touch each other's keys."
        ),
    )
    redis_password: SecretStr | None = None
    redis_tls_ca_file: Path | None = None
    redis_socket_timeout: float = Field(
        5.0, gt=0, description="Seconds a Redis call may take before it fails (and is retried)."
    )
    redis_connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to Redis.")
    redis_max_connections: int = Field(
        32, ge=2, description="Connections per worker; fan-outs are bounded by this."
    )
    anonymous_ttl: float | None = Field(
        90 * 86400.0,
        gt=0,
        description="Inactivity after which an anonymous visitor's state and aliases expire.",
    )
    known_ttl: float | None = Field(
        None, gt=0, description="Inactivity after which a known lead expires (default: never)."
    )
    model_file: Path | None = Field(
        None, description="Scoring model YAML; the shipped default model when unset."
    )
    forward_only: bool = Field(
        False,
        description=(
            "Let a worker start with a model other than the one the namespace's states were "
            "built with: the states are kept, new events score under the new model, history "
            "is not rescored; the switch is logged and recorded (`worker --forward-only`)."
        ),
    )

    events_topic: str = "leadpulse.events"
    handoffs_topic: str = "leadpulse.handoffs"
    transitions_topic: str = "leadpulse.transitions"
    dlq_topic: str = "leadpulse.events.dlq"
    deliveries_dlq_topic: str = Field(
        "leadpulse.deliveries.dlq",
        description="Where `leadpulse deliver` puts a message whose delivery was exhausted.",
    )
    events_retention: float | None = Field(
        None,
        gt=0,
        description=(
            "How long the events topic keeps events, set when leadpulse creates it "
            "(retention.ms): a duration such as 400d, or unlimited (the default), which a "
            "replay of the whole history needs. An existing topic is not changed."
        ),
    )
    partitions: int = Field(12, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)

    batch_size: int = Field(500, ge=1, le=100_000, description="Events per batch.")
    batch_within: float = Field(0.01, gt=0, description="Max seconds to wait to fill a batch.")
    sweep_interval: float = Field(1.0, gt=0, description="Seconds between decay sweeps.")
    sweep_limit: int = Field(1000, ge=1, description="Max due leads taken per sweep shard.")
    unhealthy_after: float = Field(
        30.0, gt=0, description="Seconds a transient failure may last before /health says 503."
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a worker, collector or deliverer may take to stop after SIGTERM/SIGINT "
            "(or a fatal error) before it exits anyway, whatever Kafka or Redis are doing."
        ),
    )
    max_unknown_retries: int = Field(
        5,
        ge=0,
        le=100,
        description=(
            "Retries of an error that is neither transient (Redis or Kafka away) nor permanent "
            "before it counts as permanent: the records it is pinned to are dead-lettered."
        ),
    )
    watermark_stale_after: float = Field(
        300.0,
        gt=0,
        description=(
            "Seconds after which a partition's shared watermark no longer holds sweeps back: "
            "not live for that long, i.e. neither caught up nor moving (stalled, its owner "
            "died, the partition is gone)."
        ),
    )
    producer_max_request_size: int = Field(
        1_000_000,
        ge=1024,
        description="Largest message the worker sends (bytes); larger ones are dead-lettered.",
    )
    max_future_skew: float = Field(
        300.0,
        ge=0,
        description="Seconds an event time may lie after its Kafka record time; later is clamped.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    web_port: int = Field(6066, ge=1, le=65535)
    web_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Also serve /health, /ready and /metrics on this port (a scraper or probes on "
            "another interface); the API and the pages stay on web_port."
        ),
    )
    metrics_host: str | None = Field(
        None, description="Bind address of metrics_port (default: web_host)."
    )
    api_tokens: SecretStr | None = Field(
        None,
        description=(
            "Tokens of the worker's HTTP API and page, as NAME=TOKEN:ROLE entries separated "
            "by commas, ROLE read or admin (e.g. grafana=tk_3f9...:read,ops=tk_81a...:admin). "
            "Unset: every route but /health, /ready and /metrics answers 401."
        ),
    )
    session_secret: SecretStr | None = Field(
        None,
        description=(
            "Key (32+ characters) of the page sessions' signatures; unset: derived from the "
            "API tokens, so every worker with the same tokens accepts the same sessions. "
            "Changing it ends every session."
        ),
    )
    session_ttl: float = Field(
        8 * 3600.0,
        ge=1,
        description="How long a page session (the cookie a sign-in gives) lasts, in seconds.",
    )
    cookie_secure: bool = Field(
        True,
        description=(
            "Mark the session cookie Secure (sent over https only). Switch it off only for "
            "pages served over plain http (leadpulse dev and demo, on 127.0.0.1, do)."
        ),
    )
    sign_in_max_failures: int = Field(
        10, ge=1, le=100_000, description="Failed sign-ins a client address may make per window."
    )
    sign_in_window: float = Field(
        300.0,
        gt=0,
        description="Seconds of the window failed sign-ins are counted in; then 429 until it ends.",
    )
    data_dir: Path = Path(".leadpulse")
    session_timeout: float = Field(
        6.0,
        gt=0,
        description=(
            "Kafka group session timeout (s). A group join takes about half of it; "
            "Apache Kafka refuses values under its group.min.session.timeout.ms (6 s). "
            "The embedded stack uses 2."
        ),
    )
    log_level: str = "info"

    # -- the collector (`leadpulse collect`): Segment HTTP Tracking API in front of Kafka --
    collector_host: str = Field(
        "127.0.0.1", description="Collector bind address (0.0.0.0 to take traffic from sites)."
    )
    collector_port: int = Field(
        8088, ge=1, le=65535, description="Collector ingest port: the Segment API, /health, /ready."
    )
    collector_metrics_port: int | None = Field(
        9108,
        ge=1,
        le=65535,
        description=(
            "Collector port of /metrics and /stats (and /health, /ready), apart from the "
            "public ingest port; off (none) serves neither."
        ),
    )
    collector_metrics_host: str | None = Field(
        None, description="Bind address of collector_metrics_port (default: collector_host)."
    )
    write_keys: SecretStr | None = Field(
        None,
        description=(
            "Write keys the collector accepts, as SOURCE=KEY pairs separated by commas "
            "(e.g. website=wk_3f9...,crm=wk_81a...); each key names the source it belongs to."
        ),
    )
    sales_sources: str = Field(
        "",
        description=(
            "Comma-separated sources (write key names) trusted to send the sales-only "
            "event types (sales_qualified, sales_rejected, ...); trackers never are."
        ),
    )
    collector_max_message_bytes: int = Field(
        32 * 1024, ge=256, description="Largest single message (Segment: 32 KB)."
    )
    collector_max_batch_bytes: int = Field(
        500 * 1024,
        ge=1024,
        description="Largest request body, after gzip decompression (Segment: 500 KB).",
    )
    collector_max_batch_messages: int = Field(
        2500, ge=1, description="Most messages in one batch (Segment: 2,500)."
    )
    collector_cors_origins: str = Field(
        "*",
        description="Origins browsers may post from: * or a comma-separated list of origins.",
    )
    collector_linger_ms: int = Field(
        5, ge=0, le=1000, description="Milliseconds the producer waits to fill a batch."
    )
    collector_produce_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds to wait for Kafka's acknowledgement before answering 503.",
    )
    collector_unavailable_after: float = Field(
        1.0,
        gt=0,
        description=(
            "Seconds after which a request unacknowledged by a broker that no longer answers "
            "gets its 503 (a broker that answers but is slow has collector_produce_timeout)."
        ),
    )
    collector_max_in_flight: int = Field(
        256,
        ge=1,
        description="Requests the collector works on at once; more are answered 503 at once.",
    )
    collector_rate: float | None = Field(
        None,
        gt=0,
        description=(
            "Requests per second each source (write key) may send, a token bucket; beyond it "
            "429 with Retry-After. Unset (off): no limit."
        ),
    )
    collector_rate_burst: int | None = Field(
        None,
        ge=1,
        description=(
            "Requests a source may send at once above collector_rate "
            "(default: one second's worth, at least 1)."
        ),
    )

    # -- the deliverer (`leadpulse deliver`): handoffs to webhooks, Slack, CRMs --
    destinations_file: Path | None = Field(
        None, description="Destinations YAML of `leadpulse deliver` (allow_hosts, destinations)."
    )
    deliver_group: str | None = Field(
        None, description="Consumer group of the deliverer (default: <app_id>-deliver)."
    )
    deliver_web_port: int = Field(
        6067, ge=1, le=65535, description="The deliverer's /health, /ready, /metrics port."
    )
    deliver_dedupe_retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="How long a delivered message id is remembered, so a replay is not resent.",
    )

    @property
    def deliver_group_id(self) -> str:
        return self.deliver_group or f"{self.app_id}-deliver"

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if "://" not in value:
            value = f"kafka://{value}"
        return value

    @field_validator(*PATH_FIELDS)
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator(
        "redis_socket_timeout",
        "redis_connect_timeout",
        "unhealthy_after",
        "max_future_skew",
        "anonymous_ttl",
        "known_ttl",
        "collector_produce_timeout",
        "collector_unavailable_after",
        "deliver_dedupe_retention",
        "watermark_stale_after",
        "shutdown_timeout",
        "session_ttl",
        "sign_in_window",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Seconds, or a duration such as ``5m`` / ``90d``; ``never`` for an optional one."""
        if isinstance(value, str) and value.strip().lower() in NEVER:
            return None
        if isinstance(value, str) and value and not value.replace(".", "", 1).isdigit():
            return parse_duration(value)
        return value

    @field_validator("events_retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        """``unlimited`` (or ``never``, ``none``, ``off``, ``-1``) keeps events forever."""
        if isinstance(value, str) and value.strip().lower() in {*UNLIMITED, "-1"}:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and value == -1:
            return None
        if isinstance(value, str) and value and not value.replace(".", "", 1).isdigit():
            return parse_duration(value)
        return value

    @property
    def events_retention_ms(self) -> int:
        """`events_retention` as Kafka's ``retention.ms``: -1 for unlimited."""
        if self.events_retention is None:
            return -1
        return max(1, round(self.events_retention * 1000))

    @field_validator("write_keys")
    @classmethod
    def _write_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_write_keys(value.get_secret_value())  # reject a malformed list at load
        return value

    @field_validator("metrics_port", "collector_metrics_port")
    @classmethod
    def _own_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        """A metrics port is not the port whose routes it serves apart."""
        public, why = _PORTS_APART[str(info.field_name)]
        if value is not None and value == info.data.get(public):
            raise ValueError(f"must differ from LEADPULSE_{public.upper()} ({why})")
        return value

    @field_validator("collector_metrics_port", "collector_rate", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        """``off`` / ``none`` (or empty) switches an optional collector feature off."""
        if isinstance(value, str) and value.strip().lower() in {*NEVER, ""}:
            return None
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _no_api_tokens(cls, value: Any) -> Any:
        """An empty variable (compose's ``${LEADPULSE_API_TOKENS:-}``) means none."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("session_secret", mode="before")
    @classmethod
    def _no_session_secret(cls, value: Any) -> Any:
        """An empty variable means none: the key is derived from the API tokens."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("session_secret")
    @classmethod
    def _session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SESSION_SECRET_LENGTH:
            raise ValueError(f"shorter than {MIN_SESSION_SECRET_LENGTH} characters")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_tokens(value.get_secret_value())  # reject a malformed list at load
        return value

    @property
    def api_token_roles(self) -> dict[str, tuple[str, str]]:
        """API token -> (name, role); empty when no tokens are configured."""
        if self.api_tokens is None:
            return {}
        return parse_api_tokens(self.api_tokens.get_secret_value())

    def local_api_token(self) -> str | None:
        """A configured token for this machine's own calls (an admin one first), else None."""
        roles = self.api_token_roles
        ranked = sorted(roles, key=lambda token: roles[token][1] != "admin")
        return ranked[0] if ranked else None

    @property
    def collector_metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the collector's /metrics and /stats, None when switched off."""
        if self.collector_metrics_port is None:
            return None
        return self.collector_metrics_host or self.collector_host, self.collector_metrics_port

    @property
    def collector_burst(self) -> int:
        """`collector_rate_burst`, or one second's worth of `collector_rate` (at least 1)."""
        if self.collector_rate_burst is not None:
            return self.collector_rate_burst
        return max(1, math.ceil(self.collector_rate or 1))

    @property
    def write_key_sources(self) -> dict[str, str]:
        """Write key -> the source it names (empty when no keys are configured)."""
        if self.write_keys is None:
            return {}
        return parse_write_keys(self.write_keys.get_secret_value())

    @property
    def sales_source_names(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.sales_sources.split(",") if name.strip())

    def replace(self, **changes: Any) -> Self:
        """These settings with `changes`, validated again (paths made absolute).

        Unlike `model_copy(update=...)`, which skips validation; the
        environment is not read again.
        """
        return self.model_validate({**self.model_dump(), **changes})

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port list for plain Kafka clients (aiokafka, kafka-python)."""
        hosts = value_after_scheme(self.broker)
        return [h for h in hosts.replace(",", ";").split(";") if h]


_PORTS_APART = {
    "metrics_port": ("web_port", "that port serves them already"),
    "collector_metrics_port": ("collector_port", "the public ingest port"),
}
"""A metrics port setting -> the port setting it must differ from, and why."""
MIN_WRITE_KEY_LENGTH = 16


def parse_write_keys(text: str) -> dict[str, str]:
    """``SOURCE=KEY,...`` as key -> source; ValueError naming the bad entry (never the key)."""
    keys: dict[str, str] = {}
    for number, entry in enumerate(text.split(","), start=1):
        item = entry.strip()
        if not item:
            continue
        source, sep, key = item.partition("=")
        source, key = source.strip(), key.strip()
        if not sep or not source or not key:
            raise ValueError(f"write key entry {number}: expected SOURCE=KEY")
        if len(key) < MIN_WRITE_KEY_LENGTH:
            raise ValueError(
                f"write key of source {source!r}: shorter than {MIN_WRITE_KEY_LENGTH} characters"
            )
        if key in keys:
            raise ValueError(f"write key of source {source!r}: the same key is listed twice")
        keys[key] = source
    if not keys:
        raise ValueError("no write keys: expected SOURCE=KEY[,SOURCE=KEY...]")
    return keys


MIN_API_TOKEN_LENGTH = 16
MIN_SESSION_SECRET_LENGTH = 32
API_ROLES = ("read", "admin")
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]+")
"""What a token may hold: it travels in a header and a cookie unquoted."""


def parse_api_tokens(text: str) -> dict[str, tuple[str, str]]:
    """``NAME=TOKEN:ROLE,...`` as token -> (name, role).

    ValueError naming the bad entry (by number or name), never the token;
    the CLI prefixes the variable. ROLE is ``read`` or ``admin``.
    """
    where = "API token"
    tokens: dict[str, tuple[str, str]] = {}
    for number, entry in enumerate(text.split(","), start=1):
        item = entry.strip()
        if not item:
            continue
        name, sep, rest = item.partition("=")
        token, colon, role = rest.strip().rpartition(":")
        name, token, role = name.strip(), token.strip(), role.strip().lower()
        if not sep or not name or not colon or not token:
            raise ValueError(f"{where} entry {number}: expected NAME=TOKEN:ROLE")
        if role not in API_ROLES:
            raise ValueError(f"{where} entry {number} ({name!r}): role must be read or admin")
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise ValueError(f"API token {name!r}: shorter than {MIN_API_TOKEN_LENGTH} characters")
        if not TOKEN_CHARACTERS.fullmatch(token):
            raise ValueError(
                f"API token {name!r}: only letters, digits and . _ ~ + / = - are allowed"
            )
        if token in tokens:
            raise ValueError(f"API token {name!r}: the same token is listed twice")
        tokens[token] = (name, role)
    if not tokens:
        raise ValueError("no API tokens: expected NAME=TOKEN:ROLE[,NAME=TOKEN:ROLE...]")
    return tokens


def value_after_scheme(url: str) -> str:
    return url.split("://", 1)[1] if "://" in url else url
