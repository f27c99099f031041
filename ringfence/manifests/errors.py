"""What a rejected batch of manifests reports: one issue per problem, all of them at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ManifestIssue:
    """One problem in one document.

    ``document`` counts the documents of the input from 1 (empty documents included, so it is the
    position a user sees in the file); ``kind``, ``namespace`` and ``name`` are filled in as far as
    the document got; ``path`` is the field path (``spec.egress[1].destination.selector``, with
    ``items[3].`` first for an item of a ``kind: List``), empty for the document as a whole;
    ``position`` is, for a selector that does not parse, the 0-based offset in the selector's text.
    """

    document: int
    message: str
    path: str = ""
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    position: int | None = None

    def __str__(self) -> str:
        where = f"document {self.document}"
        if self.kind or self.name:
            scope = f"{self.namespace}/" if self.namespace else ""
            what = " ".join(part for part in (self.kind, f"{scope}{self.name or '?'}") if part)
            where += f" ({what})"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ManifestError(ValueError):
    """A batch of manifests that cannot be loaded; ``errors`` lists every problem found.

    A single bad document rejects the whole batch, so a caller never applies half of it.
    """

    def __init__(self, errors: Sequence[ManifestIssue]) -> None:
        self.errors: list[ManifestIssue] = list(errors)
        lines = [str(issue) for issue in self.errors]
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} errors:\n" + "\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (ManifestError, (self.errors,))
