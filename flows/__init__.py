"""Wiring: the config file, the `raft` CLI and (later) the Prefect flows that chain the stages."""
