"""Pydantic models only, no I/O: statuses, commands, events and REST views."""
