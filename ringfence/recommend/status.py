"""How settled a recommendation is, and the annotations that record it on the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

ANNOTATION_PREFIX: Final = "ringfence.io/"
SCOPE_ANNOTATION: Final = ANNOTATION_PREFIX + "recommendation-scope"
STATUS_ANNOTATION: Final = ANNOTATION_PREFIX + "recommendation-status"
LAST_CHANGED_ANNOTATION: Final = ANNOTATION_PREFIX + "last-changed"
LAST_UPDATED_ANNOTATION: Final = ANNOTATION_PREFIX + "last-updated"
OBSERVED_UNTIL_ANNOTATION: Final = ANNOTATION_PREFIX + "observed-until"
RECOMMENDATION_LABEL: Final = ANNOTATION_PREFIX + "recommendation"

DEFAULT_STABILIZATION_PERIOD: Final = timedelta(minutes=10)
"""Calico Enterprise's default ``stabilizationPeriod``."""


class RecommendationStatus(StrEnum):
    """Learning while rules keep changing, Stabilizing after one quiet period, Stable after two."""

    LEARNING = "Learning"
    STABILIZING = "Stabilizing"
    STABLE = "Stable"


def status_for(unchanged_for: timedelta, period: timedelta) -> RecommendationStatus:
    """The status of rules that have not changed for ``unchanged_for``."""
    if unchanged_for < period:
        return RecommendationStatus.LEARNING
    if unchanged_for < 2 * period:
        return RecommendationStatus.STABILIZING
    return RecommendationStatus.STABLE


def format_time(moment: datetime | int) -> str:
    """RFC 3339 UTC with a ``Z`` (``2024-05-01T12:00:00Z``); ints are unix seconds."""
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """The moment ``text`` (as :func:`format_time` writes it) stands for; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
