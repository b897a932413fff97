"""The commands; `followerwatch.cli:main` stays the console script (see pyproject.toml)."""

from followerwatch.cli.main import app, main

__all__ = ["app", "main"]
