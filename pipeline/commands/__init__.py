"""Typer sub-apps, one module per command group; registered in pipeline/cli.py."""
