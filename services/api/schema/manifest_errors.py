"""Loading manifests sent to the API: the core's problems become one typed ``INVALID_MANIFEST`` error."""

from __future__ import annotations

import re
from typing import Any, Final

from ringfence.manifests import ManifestError, load_manifests
from ringfence.model import Resource
from services.api.schema.errors import BadUserInputError, InvalidManifestError

_POSITION: Final = re.compile(r"at position (\d+)$")
MAX_DOCUMENTS: Final = 5000


def load(text: str) -> list[Resource]:
    """Every resource of ``text``; INVALID_MANIFEST listing each problem (document, field path, position)."""
    try:
        resources = load_manifests(text)
    except ManifestError as error:
        issues = [_issue(issue) for issue in error.errors]
        raise InvalidManifestError(str(error), issues) from None
    if not resources:
        raise BadUserInputError("the manifests hold no resource", field="yaml")
    if len(resources) > MAX_DOCUMENTS:
        raise BadUserInputError(f"at most {MAX_DOCUMENTS} resources per request, got {len(resources)}", field="yaml")
    return resources


def _issue(issue: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        "document": issue.document,
        "path": issue.path,
        "message": issue.message,
        "kind": issue.kind,
        "namespace": issue.namespace,
        "name": issue.name,
    }
    position = getattr(issue, "position", None)
    if position is None and issue.path.lower().endswith("selector"):
        # The selector parser's message ends with "at position N" (0-based, in the selector's text).
        match = _POSITION.search(issue.message)
        position = int(match.group(1)) if match else None
    if position is not None:
        details["position"] = position
    return details
