"""`leadpulse collect`: the Segment HTTP Tracking API in front of the events topic.

Stateless: every request's messages are mapped (`schemas.segment`), produced
with ``acks=all`` and acknowledged before the response, so it scales apart
from the workers and stays up while they restart.
"""
