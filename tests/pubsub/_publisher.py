"""Run as a separate process by the tests: publish COUNT messages "TAG:i" to CHANNEL."""

from __future__ import annotations

import asyncio
import sys

from streamchat.pubsub import PubSub


async def main(broker: str, store: str, channel: str, count: int, tag: str, pause: float) -> None:
    async with PubSub(broker=broker, store=store, sweep_interval=None) as ps:
        for i in range(count):
            await ps.publish(channel, f"{tag}:{i}".encode())
            if pause:
                await asyncio.sleep(pause)
        if tag == "ephemeral":
            await ps.publish(channel, b"presence", store=False)


if __name__ == "__main__":
    broker, store, channel, count, tag, pause = sys.argv[1:7]
    asyncio.run(main(broker, store, channel, int(count), tag, float(pause)))
