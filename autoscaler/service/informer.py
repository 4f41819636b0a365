"""A list+watch cache of one Kubernetes collection (client-go's Reflector and Indexer, in one object).

Why: a tick that polls the API for every target, pod, HPA and Lease costs O(policies) requests a tick
and stalls when the API is slow. An :class:`Informer` lists a collection once, then follows its watch;
a tick reads memory. Writes do not go through it: they still carry their resourceVersion precondition,
and reads that need freshness (the re-read after a 409) still go to the API.

How it follows the API, as client-go does:

* the first list is paginated (``limit``/``continue``); a 410 on a ``continue`` token (the snapshot was
  compacted away mid-list) falls back to one full list, as client-go's pager does;
* the watch starts at the list's resourceVersion with ``allowWatchBookmarks=true`` and a
  ``timeoutSeconds`` drawn from ``watch_timeout_s`` (client-go: 5 to 10 minutes, so that watchers do not
  reconnect in step); bookmarks only advance the resourceVersion;
* a watch that ends cleanly is resumed from the last resourceVersion seen (no relist); a 410 (HTTP, or
  an ``ERROR`` event with code 410) relists; any other error waits a jittered, capped, exponential
  backoff, then resumes; nothing ends :meth:`Informer.run` but its ``stop`` event (or cancellation);
* a relist replaces the store at once and tells the handlers what changed while we were away, deletions
  included: an object deleted during a disconnection does not stay as a ghost.

Memory: every object is held once, in a per-namespace index (which is also the store), after
``transform`` (by default: ``metadata.managedFields`` dropped, often half an object's size). There is no
event queue: events are applied as they are read, and handlers run inline. Reads return the stored
objects themselves, not copies: callers must not mutate them.

Freshness: :meth:`Informer.fresh` trusts a list just made and a watch that delivers (an event or a
bookmark; opening is not enough). A 410 makes the store stale at once, until the relist is stored. A
half-open connection (a dead peer, no FIN) is noticed after ``idle_timeout_s`` without a byte (default
150 s: the apiserver sends a bookmark about every minute to a watch that asked for them, so silence
that long means the connection is gone); the watch is then opened again from the last
resourceVersion, which costs nothing against a server that simply had nothing to say.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from autoscaler.labels import Requirement, Selector, parse_selector
from autoscaler.service.kube import KubeClient, KubeError, KubeGone, KubeInvalidResponse, WatchEvent

__all__ = ["ChangeHandler", "Informer", "InformerCounters", "drop_managed_fields"]

log = logging.getLogger(__name__)

Object = dict[str, Any]
ChangeHandler = Callable[[str, Object | None, Object | None], None]
"""``(type, old, new)``: ADDED (old None), MODIFIED, DELETED (new None). Runs inline: keep it short."""

_SHORT_WATCH_S = 1.0  # a watch that ends cleanly this fast without an event is an error (client-go's rule)


@dataclass(slots=True)
class InformerCounters:
    """Monotonic counts, for metrics and the benchmark."""

    lists: int = 0
    """Full lists completed (the first one and every relist)."""
    pages: int = 0
    """List pages fetched (a full list of N objects takes ceil(N / page_size) pages)."""
    relists: int = 0
    """Lists after the first sync (a 410 on the watch)."""
    watches: int = 0
    """Watch streams opened."""
    events: int = 0
    """ADDED, MODIFIED and DELETED events applied from watches."""
    bookmarks: int = 0
    """BOOKMARK events (each advanced the resourceVersion)."""
    errors: int = 0
    """Failed lists and watches (each followed by a backoff wait, except a first 410)."""
    handler_errors: int = 0
    """Handlers that raised (logged; the informer goes on)."""


def drop_managed_fields(obj: Object) -> Object:
    """The default transform: ``metadata.managedFields`` (server-side apply bookkeeping) removed."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _labels(obj: Object) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") if isinstance(obj.get("metadata"), dict) else None
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


def _exact(requirement: Requirement) -> bool:
    """A term only objects with that exact label value match (so the label index may narrow to them)."""
    return requirement.op in ("=", "==") or (requirement.op == "in" and len(requirement.values) == 1)


@functools.lru_cache(maxsize=16384)  # a selector per target: the cache must hold a fleet's
def _selector(text: str) -> Selector:
    """Parsed once per distinct selector string: a tick asks with the same few selectors again and again."""
    return parse_selector(text)


def _key(obj: Object, path: str) -> tuple[str, str]:
    """(namespace, name) of an object from the API; one without a name is refused, never stored."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = (meta.get("namespace") or "") if isinstance(meta, dict) else ""
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        raise KubeInvalidResponse(
            200, "InvalidResponse", f"an object without metadata.name: {str(obj)[:200]}", method="GET", path=path
        )
    return namespace, name


def _resource_version(obj: Object) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else ""


def _page(page: Object, path: str) -> tuple[list[Object], str, str]:
    """A list answer as (items, resourceVersion, continue token); a malformed one raises."""
    meta = page.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    items, rv, token = page.get("items") or [], meta.get("resourceVersion"), meta.get("continue") or ""
    if not isinstance(items, list) or not isinstance(rv, str) or not rv or not isinstance(token, str):
        raise KubeInvalidResponse(
            200, "InvalidResponse", "a list without items, metadata.resourceVersion or a string continue", path=path
        )
    for item in items:
        if not isinstance(item, dict):
            raise KubeInvalidResponse(
                200, "InvalidResponse", f"a list item is not an object: {str(item)[:200]}", path=path
            )
    return items, rv, token


class Informer:
    """A list+watch cache of the collection at ``path`` (``/apis/apps/v1/deployments`` for all namespaces,
    ``/api/v1/namespaces/x/pods`` for one). Run it with ``await informer.run(stop)``; read it any time
    (empty until ``synced`` is set)."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        transform: Callable[[Object], Object] | None = None,
        page_size: int = 500,
        watch_timeout_s: tuple[float, float] = (300.0, 600.0),
        idle_grace_s: float = 30.0,
        idle_timeout_s: float = 150.0,
        backoff_base_s: float = 0.8,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        if page_size < 1 or not 0 < watch_timeout_s[0] <= watch_timeout_s[1] or backoff_base_s <= 0:
            raise ValueError(
                f"informer {name or path}: page_size = {page_size} must be >= 1, watch_timeout_s = "
                f"{watch_timeout_s} must be (low, high) with 0 < low <= high, backoff_base_s = {backoff_base_s} "
                "must be > 0"
            )
        self.client, self.path, self.name = client, path, name or path
        self.label_selector, self.field_selector = label_selector, field_selector
        self._transform = transform or drop_managed_fields
        self.page_size = page_size
        self.watch_timeout_s, self.idle_grace_s = watch_timeout_s, idle_grace_s
        self.idle_timeout_s = idle_timeout_s
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, max(backoff_base_s, backoff_max_s)
        self._rng = rng or random.Random()
        self._sleep, self._clock = sleep, clock
        self._store: dict[str, dict[str, Object]] = {}  # namespace -> name -> object: the store and its index
        self._by_label: dict[str, dict[tuple[str, str], set[str]]] = {}  # namespace -> (key, value) -> names
        self._handlers: list[ChangeHandler] = []
        self.synced = asyncio.Event()
        """Set once the first full list is stored (and stays set)."""
        self.resource_version = ""
        """The last resourceVersion seen (a list's, an event's, a bookmark's); "" before the first list."""
        self.last_event_monotonic: float | None = None
        """When the last watch event (bookmarks included) arrived, on ``clock``."""
        self.stats = InformerCounters()
        """The counts themselves (``counters()`` copies them into a mapping)."""
        self._connected = False
        self._last_connected: float | None = None  # on ``clock``: when a watch was last known open
        self._failures = 0  # consecutive, for the backoff

    # ------------------------------------------------------------------ reads

    def get(self, namespace: str, name: str) -> Object | None:
        """The object, or None. ``namespace`` is "" for cluster-scoped objects."""
        return self._store.get(namespace, {}).get(name)

    def items(self, namespace: str | None = None) -> list[Object]:
        """All objects (of one namespace when given)."""
        if namespace is not None:
            return list(self._store.get(namespace, {}).values())
        return [obj for objects in self._store.values() for obj in objects.values()]

    def select(self, namespace: str, selector: str) -> list[Object]:
        """The objects of ``namespace`` whose labels match ``selector`` (``a=b,c!=d,e in (x,y),!f``, as a
        Scale's ``status.selector``). Only that namespace is scanned. A bad selector raises
        :class:`autoscaler.labels.SelectorError` (a ``ValueError``) with the Go message."""
        wanted = _selector(selector)
        objects = self._store.get(namespace, {})
        index = self._by_label.get(namespace, {})
        exact = [index.get((r.key, r.values[0]), set()) for r in wanted.requirements if _exact(r)]
        # An equality term narrows to the objects carrying that label (an index by namespace, key and
        # value): a tick's thousands of selects each touch their target's pods, not the namespace's.
        narrowest: set[str] | None = min(exact, key=len) if exact else None
        names: Iterable[str] = narrowest if narrowest is not None else objects.keys()
        out: list[Object] = []
        for name in names:
            obj = objects.get(name)
            if obj is not None and wanted.matches(_labels(obj)):
                out.append(obj)
        return out

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._store.values())

    def fresh(self, max_age_s: float) -> bool:
        """True when reads can be trusted: synced, and the watch is open or was open ``max_age_s`` ago at
        most. False: the caller reads the API instead."""
        if not self.synced.is_set():
            return False
        if self._connected:
            return True
        return self._last_connected is not None and self._clock() - self._last_connected <= max_age_s

    def counters(self) -> dict[str, int]:
        """The counts as a mapping (lists, pages, relists, watches, events, bookmarks, errors,
        handler_errors), for metrics exporters and the benchmark."""
        return dataclasses.asdict(self.stats)

    def on_change(self, handler: ChangeHandler) -> Callable[[], None]:
        """Call ``handler(type, old, new)`` on every change (watch events, and the differences a relist
        finds). Returns a function that removes it."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler) if handler in self._handlers else None

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until ``stop`` is set (returns promptly: the request in flight is dropped)."""
        loop = asyncio.create_task(self._follow(), name=f"informer {self.name}")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({loop, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (loop, stopped):
                task.cancel()
            await asyncio.gather(loop, stopped, return_exceptions=True)
            self._disconnected()

    async def _follow(self) -> None:
        """The reflector loop; never returns, never raises (but CancelledError)."""
        gone_in_a_row = 0
        while True:
            progress = self.stats.events + self.stats.bookmarks
            try:
                if not self.resource_version:
                    await self._list()
                await self._watch()
            except KubeGone as exc:
                # Our resourceVersion was compacted away: relist, at once (the normal case after a long
                # disconnection). A 410 again without an event in between is an error: back off.
                log.info("informer %s: %s; relisting", self.name, exc)
                self.resource_version = ""
                self._last_connected = None  # events were missed: not fresh again until the relist is stored
                self._connected = False
                made_progress = self.stats.events + self.stats.bookmarks > progress
                gone_in_a_row = 1 if made_progress else gone_in_a_row + 1
                if gone_in_a_row > 1:
                    await self._fail(exc)
            except Exception as exc:  # anything else: back off and resume; the informer outlives it
                await self._fail(exc)

    async def _fail(self, exc: Exception) -> None:
        self.stats.errors += 1
        wait_s = self._backoff_s()
        self._failures += 1
        log.warning("informer %s: %s: %s; retrying in %.2f s", self.name, type(exc).__name__, exc, wait_s)
        await self._sleep(wait_s)

    def _backoff_s(self) -> float:
        """The wait after ``_failures`` consecutive failures: within [ceiling / 2, ceiling], where ceiling
        doubles from ``backoff_base_s`` up to ``backoff_max_s``. Never zero (no hot loop against a failing
        API), jittered (informers of many replicas do not retry in step)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(self._failures, 62))
        return self._rng.uniform(ceiling / 2, ceiling)

    # ------------------------------------------------------------------ list

    def _params(self) -> dict[str, str]:
        params = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        return params

    async def _list(self) -> None:
        """A full list, in pages; then the store is replaced at once and handlers told the differences."""
        first = not self.synced.is_set()
        try:
            objects, rv = await self._list_pages(paged=True)
        except KubeGone:
            # The snapshot behind the continue token was compacted: one unpaged list (client-go's pager).
            objects, rv = await self._list_pages(paged=False)
        self._replace(objects)
        self.resource_version = rv
        self._last_connected = self._clock()  # a list just made is as fresh as an open watch
        self.stats.lists += 1
        if not first:
            self.stats.relists += 1
        self._failures = 0
        self.synced.set()

    async def _list_pages(self, *, paged: bool) -> tuple[dict[str, dict[str, Object]], str]:
        """All pages of one list: (namespace -> name -> object, the list's resourceVersion)."""
        objects: dict[str, dict[str, Object]] = {}
        token = ""
        while True:
            params = self._params()
            if paged:
                params["limit"] = str(self.page_size)
            if token:
                params["continue"] = token
            items, rv, token = _page(await self.client.request("GET", self.path, params=params), self.path)
            self.stats.pages += 1
            for item in items:
                namespace, name = _key(item, self.path)
                objects.setdefault(namespace, {})[name] = self._transform(item)
            if not paged or not token:
                return objects, rv

    def _index(self, namespace: str, name: str, obj: Object | None, add: bool) -> None:
        if obj is None:
            return
        index = self._by_label.setdefault(namespace, {})
        for pair in _labels(obj).items():
            if add:
                index.setdefault(pair, set()).add(name)
            else:
                names = index.get(pair)
                if names is not None:
                    names.discard(name)
                    if not names:
                        del index[pair]
        if not index:
            del self._by_label[namespace]

    def _replace(self, objects: dict[str, dict[str, Object]]) -> None:
        old_store, self._store = self._store, objects
        self._by_label = {}
        for namespace, stored in objects.items():
            for name, obj in stored.items():
                self._index(namespace, name, obj, add=True)
        if not self._handlers:
            return
        for namespace, old_objects in old_store.items():
            new_objects = objects.get(namespace, {})
            for name, gone in old_objects.items():
                if name not in new_objects:
                    self._notify("DELETED", gone, None)  # deleted while we were away: no ghost
        for namespace, new_objects in objects.items():
            old_objects = old_store.get(namespace, {})
            for name, new in new_objects.items():
                old = old_objects.get(name)
                if old is None:
                    self._notify("ADDED", None, new)
                elif _resource_version(old) != _resource_version(new):
                    self._notify("MODIFIED", old, new)

    # ------------------------------------------------------------------ watch

    async def _watch(self) -> None:
        """One watch stream from ``resource_version``, applied event by event until it ends."""
        timeout_s = self._rng.uniform(*self.watch_timeout_s)
        params = {
            **self._params(),
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout_s))),
        }
        started, seen = self._clock(), 0
        idle_s = min(timeout_s, self.idle_timeout_s) + self.idle_grace_s
        async with self.client.watch(self.path, params=params, idle_timeout_s=idle_s) as events:
            self.stats.watches += 1
            try:
                async for event in events:
                    self._apply(event)
                    seen += 1
                    self._failures = 0
                    # Connected means delivering: a watch that opens and then fails (an in-stream error, a
                    # proxy cutting streams after the headers) must not keep the store "fresh".
                    self._connected = True
                    self._last_connected = self.last_event_monotonic = self._clock()
            finally:
                self._disconnected()
        if seen == 0 and self._clock() - started < _SHORT_WATCH_S:
            raise KubeError(0, "ShortWatch", "the watch ended at once without an event", path=self.path)

    def _disconnected(self) -> None:
        if self._connected:
            self._last_connected = self._clock()
        self._connected = False

    def _apply(self, event: WatchEvent) -> None:
        kind, obj = event["type"], event["object"]
        rv = _resource_version(obj)
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        else:
            namespace, name = _key(obj, self.path)
            objects = self._store.setdefault(namespace, {})
            old = objects.get(name)
            self._index(namespace, name, old, add=False)
            if kind == "DELETED":
                objects.pop(name, None)
                if not objects:
                    del self._store[namespace]
                self._notify("DELETED", old if old is not None else self._transform(obj), None)
            else:
                new = self._transform(obj)
                objects[name] = new
                self._index(namespace, name, new, add=True)
                self._notify("MODIFIED" if old is not None else "ADDED", old, new)
            self.stats.events += 1
        if rv:
            self.resource_version = rv

    def _notify(self, kind: str, old: Object | None, new: Object | None) -> None:
        for handler in list(self._handlers):
            try:
                handler(kind, old, new)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("informer %s: a change handler failed on %s", self.name, kind)
