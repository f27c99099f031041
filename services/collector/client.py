"""The HTTP side of ``ringfence ingest``: batches of a file POSTed to ``/ingest/flows``, retried safely.

Each batch is sent gzip-compressed with an ``Idempotency-Key`` derived from the source and the batch's
offsets and content, so a retry (503, a lost connection) is stored once however often it is sent.
Two requests are in flight at a time, so the server parses one while it writes the other.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from services.collector.lines import RawBatch
from services.collector.pipeline import IngestTotals
from services.collector.store import Backoff, WriteResult
from services.common.db.ingest import BatchOutcome

logger = logging.getLogger(__name__)

RETRY_STATUSES: Final = frozenset({502, 503, 504})


class IngestClientError(RuntimeError):
    """The server refused a batch for good (authentication, a malformed request) or could not be reached."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where to send and how hard to try."""

    url: str
    token: str | None
    in_flight: int = 2
    max_attempts: int = 20
    timeout: float = 60.0
    fmt: str | None = None  # the records' format; None: the server detects it per record


class IngestClient:
    """Sends batches to a collector (or the all-in-one ``up``) and adds up its answers."""

    def __init__(self, settings: ClientSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._http = httpx.AsyncClient(
            base_url=settings.url, headers=headers, timeout=settings.timeout, transport=transport
        )
        self._backoff = Backoff(initial=0.5, maximum=10.0)
        self._params = {"format": settings.fmt} if settings.fmt else {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def run(
        self, batches: AsyncIterable[RawBatch], on_stored: Callable[[RawBatch, WriteResult], None] | None = None
    ) -> IngestTotals:
        """Send every batch (``in_flight`` at a time, answers counted in order); return the totals."""
        totals = IngestTotals()
        window: asyncio.Queue[tuple[RawBatch, asyncio.Task[WriteResult]] | None] = asyncio.Queue(
            maxsize=max(1, self.settings.in_flight - 1)
        )

        async def produce() -> None:
            try:
                async for raw in batches:
                    await window.put((raw, asyncio.create_task(self.send(raw))))
            finally:
                await window.put(None)

        producer = asyncio.create_task(produce())
        try:
            while (item := await window.get()) is not None:
                raw, task = item
                result = await task
                totals.add(raw, result)
                if on_stored is not None:
                    on_stored(raw, result)
            await producer
        finally:
            producer.cancel()
            while not window.empty():
                item = window.get_nowait()
                if item is not None:
                    item[1].cancel()
        return totals

    async def send(self, raw: RawBatch) -> WriteResult:
        """POST one batch until the server stores it (or refuses it for good); line numbers made absolute."""
        body = gzip.compress(b"".join(line + b"\n" for line in raw.lines), compresslevel=1)
        key = hashlib.sha256(f"{raw.source}\0{raw.content_key()}".encode()).hexdigest()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.post(
                    "/ingest/flows", content=body, headers={"Idempotency-Key": key}, params=self._params
                )
            except httpx.TransportError as error:
                if attempt >= self.settings.max_attempts:
                    raise IngestClientError(f"cannot reach {self.settings.url}: {error}") from error
                await asyncio.sleep(self._backoff.delay(attempt))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.settings.max_attempts:
                await asyncio.sleep(_retry_after(response) or self._backoff.delay(attempt))
                continue
            if response.status_code != 200:
                raise IngestClientError(f"{self.settings.url} answered {response.status_code}: {_reason(response)}")
            answer: dict[str, Any] = response.json()
            shift = raw.first_line_no - 1
            errors = [{"line": error["line"] + shift, "error": error["error"]} for error in answer.get("errors", [])]
            outcome = BatchOutcome(int(answer["accepted"]), int(answer["rejected"]), errors)
            return WriteResult(outcome, duplicate=response.headers.get("idempotent-replayed") == "true")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]
