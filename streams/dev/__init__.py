"""Development and test tools: the embedded stack, a worker subprocess, the demo."""
