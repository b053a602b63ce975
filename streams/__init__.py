"""The running system: Faust app, agents, Redis store, sweeper, CLI, dev stack."""
