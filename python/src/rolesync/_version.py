"""The package's version: one with the npm package's (test/version.test.ts and tests/client/test_wheel.py keep them equal)."""

__version__ = "0.2.0"
