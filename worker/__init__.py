"""Composition root, command handlers, projection fold, settings and the CLI."""
