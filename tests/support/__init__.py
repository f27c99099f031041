"""Helpers shared by the tests of every package (``tests/`` is on ``sys.path``: ``from support.x import y``)."""
