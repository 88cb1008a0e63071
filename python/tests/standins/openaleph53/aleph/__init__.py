"""A stand-in for OpenAleph 5.3 (openaleph/openaleph 5.3.1-rc3, commit 189a0715), for rolesync's tests.

This is NOT OpenAleph's code. It is a stand-in written for this repository
from the facts (the project's notes on Aleph's login, and a reading of
OpenAleph's public source), in its own words and structure. It reproduces
only what the OAuth login path needs: the settings it reads, the `role` and
`role_membership` models, `handle_oauth`, the callback view, and the
`aleph.init` entry-point hook of `create_app`. The package is named `aleph`,
as OpenAleph's is.
"""

LINE = "openaleph53"
VERSION = "5.3"
