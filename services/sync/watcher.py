"""List and watch one kind of cluster object, keeping a local copy that survives broken streams.

The protocol, as Kubernetes clients (informers) follow it:

1. **List**: every object and the list's ``resourceVersion``.
2. **Watch** from that version; each event carries the object's new version, and ``BOOKMARK`` events
   advance the version without an object. The server ends a watch after ``timeoutSeconds``.
3. When a stream ends or breaks (server restart, load balancer idle timeout, network), **resume**
   the watch from the last version seen: no event is lost and nothing is listed again.
4. When the server answers **410 Gone** (the version is older than its history), **relist**: the
   list replaces the local copy, so objects deleted while nobody watched disappear too.

A :class:`Watcher` runs in a thread of its own (the ``kubernetes`` client blocks); it calls
``on_change`` after every change to its copy, from that thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import urllib3

from services.sync.client import ClusterClient, ClusterError, ResourceExpiredError, cut
from services.sync.kinds import ClusterKind

logger = logging.getLogger(__name__)

Document = dict[str, Any]
ObjectId = tuple[str, str]  # namespace ("" when cluster-scoped), name

DEFAULT_WATCH_TIMEOUT: Final = 300  # seconds the server keeps one watch open
HTTP_SERVER_ERRORS: Final = 500


class Watcher:
    """The objects of one kind, kept current by list + watch."""

    def __init__(
        self,
        client: ClusterClient,
        kind: ClusterKind,
        *,
        on_change: Callable[[], None] = lambda: None,
        timeout_seconds: int = DEFAULT_WATCH_TIMEOUT,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
    ) -> None:
        self.client = client
        self.kind = kind
        self.on_change = on_change
        self.timeout_seconds = timeout_seconds
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.resource_version = ""
        self.synced = threading.Event()
        self.lists = 0  # lists made (the first one included)
        self.resumes = 0  # watches resumed from a known version after a stream ended or broke
        self.expirations = 0  # 410 Gone answers
        self.last_error: str | None = None
        self._objects: dict[ObjectId, Document] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None

    # --- reading the copy ------------------------------------------------------------------------

    def objects(self) -> list[Document]:
        """The current objects (the documents are shared: do not change them)."""
        with self._lock:
            return list(self._objects.values())

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop: cut the open stream and wait for the thread."""
        self._stop.set()
        response = self._response
        if response is not None:
            cut(response)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """List, then watch and resume until stopped; relist after 410 Gone; back off on errors."""
        delay = self.retry_delay
        watched_since_list = False
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                    watched_since_list = False
                if watched_since_list:
                    self.resumes += 1
                watched_since_list = True
                self.watch_once()
                delay = self.retry_delay
            except ResourceExpiredError as error:
                logger.info("%s: %s; listing again", self.kind, error)
                self.expirations += 1
                self.resource_version = ""
            except (urllib3.exceptions.HTTPError, OSError, ClusterError, ValueError) as error:
                if self._stop.is_set():
                    break
                if isinstance(error, ClusterError) and error.status < HTTP_SERVER_ERRORS:
                    logger.warning("%s: the API server refused: %s", self.kind, error)
                else:
                    logger.info("%s: the watch broke (%s); resuming in %.1f s", self.kind, error, delay)
                self.last_error = f"{type(error).__name__}: {error}"
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_retry_delay)

    def relist(self) -> None:
        """Replace the copy with a fresh list and remember its version."""
        listed = self.client.list(self.kind, request_timeout=60)
        self.lists += 1
        fresh = {_object_id(obj): obj for obj in listed.items}
        with self._lock:
            changed = fresh != self._objects
            self._objects = fresh
        self.resource_version = listed.resource_version
        self.last_error = None
        self.synced.set()
        if changed or self.lists == 1:
            self.on_change()

    def watch_once(self) -> None:
        """Follow one watch stream from the current version until it ends."""
        events = self.client.watch(
            self.kind,
            self.resource_version,
            timeout_seconds=self.timeout_seconds,
            request_timeout=self.timeout_seconds + 30,
            on_response=self._remember,
        )
        try:
            for event in events:
                if self._stop.is_set():
                    break
                version = event.resource_version
                if event.type == "BOOKMARK":
                    if version:
                        self.resource_version = version
                    continue
                object_id = _object_id(event.object)
                with self._lock:
                    if event.type == "DELETED":
                        self._objects.pop(object_id, None)
                    else:
                        self._objects[object_id] = event.object
                if version:
                    self.resource_version = version
                self.last_error = None
                self.on_change()
        finally:
            self._response = None

    def _remember(self, response: Any) -> None:
        self._response = response
        if self._stop.is_set():
            cut(response)


def _object_id(obj: Document) -> ObjectId:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
