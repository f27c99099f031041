"""The REST and watch protocol of the Kubernetes API server, over :class:`ClusterState`.

Paths as the real server has them: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...``
otherwise, with ``namespaces/<ns>/`` before namespaced resources; discovery at ``/api``, ``/apis`` and
each group version. Lists carry ``metadata.resourceVersion``; ``?watch=true`` answers a chunked stream
of JSON lines (``{"type": ..., "object": ...}``), from ``resourceVersion`` when given (410 Gone in an
``ERROR`` event when it is too old), else starting with ``ADDED`` for every current object. PATCH
understands server-side apply (``application/apply-patch+yaml`` with ``fieldManager`` and ``force``)
and JSON merge patches; DELETE honours ``preconditions.resourceVersion``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from k8s_double.resources import ResourceType
from k8s_double.state import ApiError, ClusterState


class StreamDroppedError(Exception):
    """Raised inside a watch stream to cut the connection without ending the chunked body."""


@dataclass(frozen=True, slots=True)
class Target:
    rtype: ResourceType
    namespace: str | None  # None: across all namespaces (or cluster-scoped)
    name: str | None


@dataclass(slots=True)
class RequestLog:
    """Every request the double served: method, path and query (tests count lists and watches)."""

    entries: list[tuple[str, str, dict[str, str]]]

    def count(self, method: str, path: str, *, watch: bool | None = None) -> int:
        return sum(
            1
            for m, p, query in self.entries
            if m == method and p == path and (watch is None or (query.get("watch") in {"true", "1"}) == watch)
        )


def build_app(state: ClusterState, log: RequestLog, *, bookmark_interval: float) -> Starlette:
    async def handle(request: Request) -> Response:
        log.entries.append((request.method, request.url.path, dict(request.query_params)))
        try:
            return await _dispatch(state, request, bookmark_interval)
        except ApiError as error:
            return JSONResponse(error.status(), status_code=error.code)

    return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])


async def _dispatch(state: ClusterState, request: Request, bookmark_interval: float) -> Response:
    segments = [segment for segment in request.url.path.split("/") if segment]
    discovery = _discovery(state, segments)
    if discovery is not None:
        return JSONResponse(discovery)
    target = _target(state, segments)
    method = request.method
    query = request.query_params
    if target.name is None:
        if method == "GET" and query.get("watch") in {"true", "1"}:
            return _watch(state, target, request, bookmark_interval)
        if method == "GET":
            items, version = state.list(target.rtype, target.namespace)
            if target.rtype.builtin:
                for item in items:
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
            return JSONResponse(
                {
                    "apiVersion": target.rtype.api_version,
                    "kind": target.rtype.list_kind,
                    "metadata": {"resourceVersion": str(version)},
                    "items": items,
                }
            )
        if method == "POST":
            body = await _json(request)
            namespace = target.namespace or ""
            created = state.create(target.rtype, namespace, body, query.get("fieldManager", "unknown"))
            return JSONResponse(created, status_code=201)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
    namespace = target.namespace or ""
    if method == "GET":
        return JSONResponse(state.get(target.rtype, namespace, target.name))
    if method == "PUT":
        body = await _json(request)
        manager = query.get("fieldManager", "unknown")
        return JSONResponse(state.replace(target.rtype, namespace, target.name, body, manager))
    if method == "PATCH":
        return await _patch(state, target, request)
    if method == "DELETE":
        raw = await request.body()
        options = json.loads(raw) if raw else {}
        deleted = state.delete(target.rtype, namespace, target.name, options.get("preconditions") or {})
        return JSONResponse(deleted)
    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")


async def _patch(state: ClusterState, target: Target, request: Request) -> Response:
    assert target.name is not None
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    query = request.query_params
    namespace = target.namespace or ""
    raw = await request.body()
    if content_type == "application/apply-patch+yaml":
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value")
        try:
            body = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {error}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the apply patch must be an object")
        applied = state.apply(
            target.rtype,
            namespace,
            target.name,
            body,
            manager,
            force=query.get("force") in {"true", "1"},
            dry_run=query.get("dryRun") == "All",
        )
        return JSONResponse(applied)
    if content_type in {"application/merge-patch+json", "application/strategic-merge-patch+json"}:
        patch = json.loads(raw)
        manager = query.get("fieldManager", "unknown")
        return JSONResponse(state.merge_patch(target.rtype, namespace, target.name, patch, manager))
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except json.JSONDecodeError as error:
        raise ApiError(400, "BadRequest", f"invalid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be an object")
    return body


def _discovery(state: ClusterState, segments: list[str]) -> dict[str, Any] | None:
    groups: dict[str, list[ResourceType]] = {}
    for rtype in state.types:
        groups.setdefault(rtype.api_version, []).append(rtype)
    if segments == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if segments == ["apis"]:
        named = sorted({rtype.group for rtype in state.types if rtype.group})
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": group,
                    "versions": [
                        {"groupVersion": api_version, "version": api_version.split("/")[1]}
                        for api_version in sorted(groups)
                        if api_version.split("/")[0] == group
                    ],
                    "preferredVersion": {
                        "groupVersion": next(v for v in sorted(groups) if v.split("/")[0] == group),
                        "version": next(v for v in sorted(groups) if v.split("/")[0] == group).split("/")[1],
                    },
                }
                for group in named
            ],
        }
    api_version = None
    if len(segments) == 2 and segments[0] == "api":
        api_version = segments[1]
    elif len(segments) == 3 and segments[0] == "apis":
        api_version = f"{segments[1]}/{segments[2]}"
    if api_version is None:
        return None
    if api_version not in groups:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": [
            {
                "name": rtype.plural,
                "singularName": rtype.kind.lower(),
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for rtype in groups[api_version]
        ],
    }


def _target(state: ClusterState, segments: list[str]) -> Target:
    if len(segments) >= 2 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 2:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    plural = rest[0]
    for rtype in state.types:
        if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
            if namespace is not None and not rtype.namespaced:
                break
            name = rest[1] if len(rest) == 2 else None
            if name is not None and rtype.namespaced and namespace is None:
                break
            return Target(rtype, namespace, name)
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _watch(state: ClusterState, target: Target, request: Request, bookmark_interval: float) -> Response:
    query = request.query_params
    since = query.get("resourceVersion") or ""
    timeout = float(query.get("timeoutSeconds") or 1800)
    bookmarks = query.get("allowWatchBookmarks") in {"true", "1"}
    if since not in {"", "0"} and not since.isdigit():
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
    return StreamingResponse(
        _stream(
            state, target, since, deadline=time.monotonic() + timeout, bookmarks=bookmarks, interval=bookmark_interval
        ),
        media_type="application/json",
    )


async def _stream(
    state: ClusterState, target: Target, since: str, *, deadline: float, bookmarks: bool, interval: float
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    listener = state.subscribe(lambda: loop.call_soon_threadsafe(wake.set))
    generation = state.drop_generation
    try:
        if since in {"", "0"}:
            items, cursor = state.list(target.rtype, target.namespace)
            for item in items:
                yield _line("ADDED", item)
        else:
            cursor = int(since)
        last_sent = time.monotonic()
        while True:
            wake.clear()
            if state.drop_generation != generation:
                if state.drop_abruptly:
                    raise StreamDroppedError
                return
            try:
                events, seen = state.events_after(target.rtype, target.namespace, cursor)
            except ApiError as error:
                yield _line("ERROR", error.status())
                return
            for event in events:
                yield _line(event.type, event.obj)
                last_sent = time.monotonic()
            cursor = max(cursor, seen)  # every event of this type up to `seen` is delivered
            now = time.monotonic()
            if now >= deadline:
                return
            if bookmarks and now - last_sent >= interval:
                yield _line(
                    "BOOKMARK",
                    {
                        "apiVersion": target.rtype.api_version,
                        "kind": target.rtype.kind,
                        "metadata": {"resourceVersion": str(cursor)},
                    },
                )
                last_sent = now
            wait = max(0.01, min(deadline - now, interval - (now - last_sent) if bookmarks else 1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=wait)
    finally:
        state.unsubscribe(listener)


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


__all__ = ["RequestLog", "StreamDroppedError", "build_app"]
