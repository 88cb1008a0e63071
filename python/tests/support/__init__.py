"""Test support for rolesync's Python package: stand-ins, databases, cases, the concurrency runner."""
