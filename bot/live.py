"""Live updates: publish an event on a topic, and every open socket subscribed to it gets it.

Topics: `conversation:<id>` (the citizen's page and the agent holding it) and
`queues` (every console). Events only say that something changed and carry the
new line or item; the database stays the source of truth, so a socket that
reconnects catches up by reading from it, and a lost event loses nothing.

`LocalHub` serves one app worker. Several workers need a shared broker behind
the same two methods (Redis pub/sub, with the Redis-backed shared store).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Event = dict[str, Any]
QUEUES = "queues"


def conversation_topic(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


class Subscription:
    """What a socket reads events from; `follow` adds a topic (e.g. once a first message opened a conversation)."""

    def __init__(self, hub: LocalHub, loop: asyncio.AbstractEventLoop):
        self.hub, self.loop = hub, loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.topics: set[str] = set()

    def follow(self, topic: str) -> None:
        self.hub._add(self, topic)

    async def get(self) -> Event:
        return await self.events.get()


class LocalHub:
    """In-process fan-out; `publish` may be called from any thread (routes run in a thread pool)."""

    def __init__(self, max_backlog: int = 1000):
        self.max_backlog = max_backlog
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    def publish(self, topic: str, event: Event) -> None:
        with self._lock:
            targets = list(self._subscribers.get(topic, ()))
        for subscription in targets:
            subscription.loop.call_soon_threadsafe(self._offer, subscription, {**event, "topic": topic})

    def _offer(self, subscription: Subscription, event: Event) -> None:
        if subscription.events.qsize() < self.max_backlog:  # a stalled socket must not grow without bound
            subscription.events.put_nowait(event)

    def _add(self, subscription: Subscription, topic: str) -> None:
        with self._lock:
            self._subscribers[topic].add(subscription)
            subscription.topics.add(topic)

    @asynccontextmanager
    async def subscribe(self, *topics: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(self, asyncio.get_running_loop())
        for topic in topics:
            subscription.follow(topic)
        try:
            yield subscription
        finally:
            with self._lock:
                for topic in subscription.topics:
                    self._subscribers[topic].discard(subscription)
                    if not self._subscribers[topic]:
                        del self._subscribers[topic]
