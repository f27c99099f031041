"""The one exception the flow-record parsers raise."""

from __future__ import annotations


class FlowRecordError(ValueError):
    """A flow record that cannot become a :class:`~ringfence.flows.record.Flow`.

    ``field`` is the dotted path of the offending field as the record spells it (``source_port``,
    ``policies.enforced_policies[2]``, ``flow.l4.TCP.destination_port``; empty when the record as a
    whole is wrong) and ``reason`` says what is wrong with it. The collector stores both with the
    rejected line.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (FlowRecordError, (self.field, self.reason))
