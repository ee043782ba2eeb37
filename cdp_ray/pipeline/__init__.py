"""Pipelines: a lake source, processors and sinks, run on Ray Data by ledger-range chunks."""
