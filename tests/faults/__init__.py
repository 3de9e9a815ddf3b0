"""Fault injection: killed workers and runs, truncated checkpoints, a database that goes away, many writers."""
