"""Kafka wiring: topic catalogue, one security mapping, the publisher, the Faust transport."""
