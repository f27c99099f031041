"""The one exception the selector language raises."""

from __future__ import annotations


class SelectorError(ValueError):
    """A selector that does not parse.

    ``position`` is the 0-based character offset where parsing failed (the length of the text when
    the selector ended too early) and ``selector`` is the text that was parsed. The message says
    what was expected and what was found, e.g. ``expected ')' but found end of selector at position 14``.
    """

    def __init__(self, message: str, *, selector: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.selector = selector
        self.position = position

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments need explicit pickling support (Celery passes errors).
        return (_rebuild, (self.reason, self.selector, self.position))


def _rebuild(reason: str, selector: str, position: int) -> SelectorError:
    return SelectorError(reason, selector=selector, position=position)
