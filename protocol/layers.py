"""The single-process channel layer: Channels' in-memory layer without its per-message overheads.

Measured in bench/ profiles (ping, vlob writes: a quarter of the event loop's time went to the layer):
`InMemoryChannelLayer` deep-copies every message for every channel, starts one task per channel of a
`group_send`, and on every `receive` and `group_send` scans every channel's queue and every group's
memberships for expired entries, a cost that grows with the number of connected sessions. Here:

* messages are not copied: ours are never mutated after sending (pre-encoded payload, plain fields);
* a group send puts the message in each member's queue directly, in the caller's task;
* expired messages are swept at most once per `SWEEP_INTERVAL` seconds, looking only at channels
  holding messages; memberships are not swept at all: they last as long as their session, which
  discards them at disconnect (settings.GROUP_MEMBERSHIP_LIFETIME). Channels' sweep walked every
  membership each time: 25 ms of event loop every second with 5,000 sessions, a writer's p99 tripled;
* a session joins or leaves all its groups in one call (`group_add_many`, `group_discard_many`, used
  through `protocol.groups.join_groups`/`leave_groups`), not one awaited call or task per group;
* a large group is filled `FANOUT_CHUNK` members at a time, yielding to the event loop in between, so
  that the replies and requests of other sessions (the writer's own reply first) are not queued behind
  the wake-ups of thousands of receivers.

Everything else (API, capacity, expiry semantics, channel names) is Channels' own.
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

SWEEP_INTERVAL = 1.0
_GROUP_NAMES = re.compile(rf"(?:[a-zA-Z\d\-_.]{{1,{InMemoryChannelLayer.MAX_NAME_LENGTH - 1}}}\n)*")
FANOUT_CHUNK = 64


class LocalChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next_sweep = 0.0

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self._put(channel, message)

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = list(self.groups.get(group, ()))
        for start in range(0, len(members), FANOUT_CHUNK):
            if start:
                # Concurrent sends to one group keep their order per member: each resumes in turn.
                await asyncio.sleep(0)
            for channel in members[start:start + FANOUT_CHUNK]:
                try:
                    self._put(channel, message)
                except ChannelFull:
                    pass  # as Channels does: a full channel misses the message

    def group_add_many(self, groups: list[str], channel: str) -> None:
        """`group_add` of each group, at once: the session start of a user holding 1,000 realms joins 1,000
        groups, and one task per join (what gathering the awaits costs) made that ~10 ms of event loop."""
        self.require_valid_channel_name(channel)
        # Channels' rule for each name (ASCII alphanumerics, hyphens, underscores, periods; < 100 characters),
        # checked in one pass over all of them: per name, the check cost as much as the join itself.
        if groups:
            names = "\n".join(groups) + "\n"  # TypeError on a non-str, as Channels
            # The count: a name holding the separator would otherwise pass as two.
            if names.count("\n") != len(groups) or not _GROUP_NAMES.fullmatch(names):
                raise TypeError(self.invalid_name_error.format("Group"))
        now = time.time()
        for group in groups:
            self.groups.setdefault(group, {})[channel] = now

    def group_discard_many(self, groups: list[str], channel: str) -> None:
        """`group_discard` of each group, at once (a session's end)."""
        self.require_valid_channel_name(channel)
        for group in groups:
            members = self.groups.get(group)
            if members:
                members.pop(channel, None)
                if not members:
                    del self.groups[group]

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        wall = time.time()
        for channel, queue in list(self.channels.items()):
            # Channels' own rule: a message left unread past its expiry means a dead channel.
            while queue._queue and queue._queue[0][0] < wall:
                queue.get_nowait()
                self._remove_from_groups(channel)
                if not queue._queue:
                    self.channels.pop(channel, None)
