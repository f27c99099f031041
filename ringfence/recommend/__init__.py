"""The recommendation engine: staged policies learned from the allowed flows of a scope.

>>> from ringfence.recommend import Scope, recommend
>>> rec = recommend(flows, Scope("storefront", "backend-6cfbdd589f-*"), now)   # doctest: +SKIP
>>> rec.policy.name, rec.status                                                # doctest: +SKIP
('recommended-backend', <RecommendationStatus.LEARNING: 'Learning'>)
"""

from __future__ import annotations

from ringfence.recommend.recommender import Outcome, Recommendation, RecommendationError, recommend
from ringfence.recommend.scope import Scope, ScopeKind, workload_base_name
from ringfence.recommend.status import DEFAULT_STABILIZATION_PERIOD, RecommendationStatus

__all__ = [
    "DEFAULT_STABILIZATION_PERIOD",
    "Outcome",
    "Recommendation",
    "RecommendationError",
    "RecommendationStatus",
    "Scope",
    "ScopeKind",
    "recommend",
    "workload_base_name",
]
