"""protocol.layers.LocalChannelLayer: Channels' in-memory layer without copies, per-channel tasks or
per-message sweeps; and the settings' membership lifetime."""
from __future__ import annotations

import time

import pytest
from channels.layers import get_channel_layer

from protocol import layers
from protocol.layers import LocalChannelLayer


@pytest.fixture
def layer() -> LocalChannelLayer:
    return LocalChannelLayer(capacity=2, expiry=60, group_expiry=10 * 365 * 24 * 3600)


async def test_group_send_reaches_every_member_once(layer):
    await layer.group_add("parsec.org.1", "a.inmemory!one")
    await layer.group_add("parsec.org.1", "b.inmemory!two")
    await layer.group_add("parsec.org.2", "c.inmemory!three")
    message = {"type": "parsec.event", "payload": b"x"}
    await layer.group_send("parsec.org.1", message)
    assert await layer.receive("a.inmemory!one") is message  # not copied
    assert await layer.receive("b.inmemory!two") is message
    assert "c.inmemory!three" not in layer.channels


async def test_a_full_channel_misses_the_group_message_and_others_still_get_it(layer):
    await layer.group_add("g", "full.inmemory!x")
    await layer.group_add("g", "free.inmemory!y")
    for index in range(2):
        await layer.send("full.inmemory!x", {"type": "t", "n": index})
    await layer.group_send("g", {"type": "t", "n": 2})
    assert [(await layer.receive("full.inmemory!x"))["n"] for _ in range(2)] == [0, 1]
    assert (await layer.receive("free.inmemory!y"))["n"] == 2


async def test_direct_send_to_a_full_channel_raises(layer):
    from channels.exceptions import ChannelFull

    await layer.send("c.inmemory!x", {"type": "t"})
    await layer.send("c.inmemory!x", {"type": "t"})
    with pytest.raises(ChannelFull):
        await layer.send("c.inmemory!x", {"type": "t"})


async def test_expired_messages_are_swept_at_most_once_per_interval(layer, monkeypatch):
    await layer.send("old.inmemory!x", {"type": "t"})
    _expiry, message = layer.channels["old.inmemory!x"]._queue[0]
    layer.channels["old.inmemory!x"]._queue[0] = (time.time() - 1, message)  # already expired
    layer._next_sweep = time.monotonic() + 60
    await layer.group_send("nobody", {"type": "t"})
    assert "old.inmemory!x" in layer.channels  # not swept yet: the interval has not passed
    layer._next_sweep = 0.0
    await layer.group_send("nobody", {"type": "t"})
    assert "old.inmemory!x" not in layer.channels
    assert layers.SWEEP_INTERVAL == 1.0


async def test_memberships_outlive_channels_one_day_default(settings):
    # Parsec sessions stay connected for days: Channels' default (86400 s) would drop their groups.
    layer = get_channel_layer()
    assert isinstance(layer, LocalChannelLayer)
    assert layer.group_expiry >= 365 * 24 * 3600
    await layer.group_add("parsec.org.9", "long.inmemory!lived")
    layer.groups["parsec.org.9"]["long.inmemory!lived"] = time.time() - 3 * 24 * 3600  # joined 3 days ago
    layer._next_sweep = 0.0
    await layer.group_send("parsec.org.9", {"type": "t"})
    assert (await layer.receive("long.inmemory!lived"))["type"] == "t"
    await layer.group_discard("parsec.org.9", "long.inmemory!lived")


def test_redis_layer_gets_the_same_membership_lifetime():
    from channels_redis.core import RedisChannelLayer

    from parsec_site.settings import channel_layers

    config = channel_layers("redis://127.0.0.1:6379/0")["default"]
    layer = RedisChannelLayer(**config["CONFIG"])  # builds without connecting
    assert config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert layer.group_expiry >= 365 * 24 * 3600


async def test_many_groups_at_once_as_one_by_one(layer):
    """`group_add_many` / `group_discard_many` (a session joining or leaving its realm groups in one call)
    leave the memberships as the one-by-one calls do."""
    one_by_one = LocalChannelLayer(group_expiry=layer.group_expiry)
    groups = [f"parsec.realm.1.{index:032x}" for index in range(50)]
    await one_by_one.group_add(groups[0], "other.inmemory!x")
    layer.group_add_many([groups[0]], "other.inmemory!x")
    for group in groups:
        await one_by_one.group_add(group, "me.inmemory!y")
    layer.group_add_many(groups, "me.inmemory!y")
    assert {g: set(m) for g, m in layer.groups.items()} == {g: set(m) for g, m in one_by_one.groups.items()}
    await layer.group_send(groups[7], {"type": "t"})
    assert (await layer.receive("me.inmemory!y"))["type"] == "t"

    for group in groups:
        await one_by_one.group_discard(group, "me.inmemory!y")
    layer.group_discard_many([*groups, "never.joined"], "me.inmemory!y")
    # Empty groups are gone; the other channel's membership stays.
    assert layer.groups == {groups[0]: {"other.inmemory!x": layer.groups[groups[0]]["other.inmemory!x"]}}
    assert set(layer.groups) == set(one_by_one.groups)


async def test_many_groups_refuses_bad_names_as_group_add_does(layer):
    longest = "g" * (layer.MAX_NAME_LENGTH - 1)
    layer.group_add_many([], "me.inmemory!y")
    layer.group_add_many(["parsec.ok-_.9", longest], "me.inmemory!y")
    assert set(layer.groups) == {"parsec.ok-_.9", longest}
    for bad in ["bad name with spaces", "", longest + "g", "new\nline", "é", 42]:
        with pytest.raises(TypeError):
            await layer.group_add(bad, "me.inmemory!y")  # Channels' own rule...
        with pytest.raises(TypeError):
            layer.group_add_many(["parsec.fine", bad], "me.inmemory!y")  # ...is group_add_many's
    assert set(layer.groups) == {"parsec.ok-_.9", longest}  # nothing joined from a refused list
    with pytest.raises(TypeError):
        layer.group_add_many(["parsec.ok"], "bad channel")
    with pytest.raises(TypeError):
        layer.group_discard_many(["parsec.ok"], "bad channel")
