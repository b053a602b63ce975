"""Read-side HTTP views of leads (the worker serves them; the CLI formats them)."""
