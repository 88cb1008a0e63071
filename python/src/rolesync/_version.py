"""The package's version: one with the npm package's (test/python.test.ts keeps them equal)."""

__version__ = "0.2.0"
