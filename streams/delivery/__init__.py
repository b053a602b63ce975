"""Delivery of handoffs (and transitions) to sales tools: signed webhooks, Slack, retries.

`leadpulse deliver` runs it in a process of its own (`streams.delivery.deliverer`),
so a slow CRM never holds back scoring.
"""
