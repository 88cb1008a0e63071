"""A stand-in for Aleph 4.1.6 (alephdata/aleph, commit 4cbb29a6), for rolesync's tests.

This is NOT Aleph's code. It is a stand-in written for this repository from
the facts (the project's notes on Aleph's login, and a reading of Aleph's
public source), in its own words and structure. It reproduces only what the
OAuth login path needs: the settings it reads, the `role` and
`role_membership` models, `handle_oauth`, the callback view, and the
`aleph.init` entry-point hook of `create_app`. Everything else of Aleph
(search, queues, caches, the UI) is left out.
"""

LINE = "aleph41"
VERSION = "4.1.6"
