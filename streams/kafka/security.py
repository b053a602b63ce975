"""The one mapping from security settings to every Kafka client leadpulse runs.

The worker (Faust over aiokafka), the CLI's `send` and `tail` and the admin
client (kafka-python) all connect with these options, so a cluster that
needs TLS or SASL works for every command or for none.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from leadpulse.streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL / SASL_SSL (the CA file when set), else None."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=cafile)


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """kafka-python client options (producer, consumer, admin)."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile is not None:
        options["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return options


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials`: SASL and/or a TLS context, or None for PLAINTEXT."""
    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        )
    return context


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """aiokafka client options (the collector's producer); same meaning as the others."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options
