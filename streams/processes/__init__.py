"""One module per process: each builds its own parts from the settings and runs them.

`cli/` parses arguments and calls these; `dev/` starts them as child processes.
"""
