"""The scoring pipeline: processor, identity merges, outbox, sweeper, and the Faust app."""
