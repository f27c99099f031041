"""Opaque cursors and page-size limits shared by the connections (flows, audit log)."""

from __future__ import annotations

import base64
import binascii
from typing import Final

from services.api.schema.errors import BadUserInputError

MAX_FLOW_PAGE: Final = 1000
MAX_AUDIT_PAGE: Final = 500


def encode_cursor(kind: str, value: str) -> str:
    """An opaque cursor for ``value`` in a connection of ``kind``."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    """The value of a cursor made by :func:`encode_cursor` for ``kind``; BAD_USER_INPUT when it is not one."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix, sep, value = text.partition(":")
    if not sep or prefix != kind:
        raise BadUserInputError(f"after: {cursor!r} is not a cursor of this connection", field="after")
    return value


def check_page_size(first: int, maximum: int) -> int:
    """``first`` when 0 <= first <= maximum; BAD_USER_INPUT otherwise."""
    if first < 0 or first > maximum:
        raise BadUserInputError(f"first must be between 0 and {maximum}, got {first}", field="first", maximum=maximum)
    return first
