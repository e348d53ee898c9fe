"""A minimal sidecar-protocol agent, run as its own process by tests/test_smoke.py.

    python tests/smoke_agent.py --config .agentcom/agents/NAME.json [--heartbeat 0.2]

It speaks the protocol the real sidecar speaks (shared-sidecar agreements): it logs in with its
own NATS user from the config, uses its own reply prefix, binds its durable INBOX consumer, says
`hello`, sends heartbeats, and answers an `assign` with `accepted`, then after the task's
`metadata.work_ms` (first attempt only; later attempts are quick) with `completed`. Reports are
JetStream publishes with `Nats-Msg-Id = <agent>-<seq>`. It prints one line per step to stdout
so the test can see where it is; kill -9 is the crash under test.
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

Json = dict[str, Any]


def say(line: str) -> None:
    """One step, for the test reading this process's output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Agent:
    def __init__(self, config: Json, heartbeat: float) -> None:
        self.id: str = config["agent_id"]
        self.config = config
        self.heartbeat = heartbeat
        self.seq = 0
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None

    async def report(self, body: Json) -> None:
        assert self.js is not None
        self.seq += 1
        await self.js.publish(
            f"agentcom.agent.{self.id}.report",
            json.dumps(body | {"agent_id": self.id}).encode(),
            headers={"Nats-Msg-Id": f"{self.id}-{self.seq}"},
        )

    async def run(self) -> None:
        self.nc = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
            self.config["nats_url"],
            user=self.config["nats_user"],
            password=self.config["nats_password"],
            inbox_prefix=f"_INBOX_{self.id}",
            reconnect_time_wait=0.05,
        )
        self.js = self.nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        inbox = await self.js.pull_subscribe(
            f"agentcom.agent.{self.id}.inbox", durable=f"agent-{self.id}", stream="INBOX"
        )
        await self.report({"kind": "hello", "state": "idle"})
        say("hello")
        beats = asyncio.create_task(self.beat())
        try:
            while True:
                try:
                    batch = await inbox.fetch(1, timeout=1)
                except TimeoutError:
                    continue
                for msg in batch:
                    await msg.ack()  # journaled (here: nowhere) before acting on it
                    await self.handle(json.loads(msg.data))
        finally:
            beats.cancel()

    async def beat(self) -> None:
        while True:
            await self.report({"kind": "heartbeat", "cpu_percent": 1.0, "host": "smoke"})
            await asyncio.sleep(self.heartbeat)

    async def handle(self, message: Json) -> None:
        if message.get("kind") != "assign":
            say(f"got {message.get('kind')}")
            return
        task: Json = message["task"]
        generation = int(message["generation"])
        ids = {"task_id": task["id"], "generation": generation}
        await self.report(ids | {"kind": "accepted"})
        say(f"accepted {task['id']} {generation}")
        metadata: Json = task.get("metadata") or {}
        work_ms = float(metadata.get("work_ms", 0)) if generation == 1 else 5.0
        await asyncio.sleep(work_ms / 1000)
        await self.report(ids | {"kind": "completed", "result": {"by": self.id}})
        say(f"completed {task['id']} {generation}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--heartbeat", type=float, default=0.2)
    args = parser.parse_args()
    config: Json = json.loads(args.config.read_text())
    asyncio.run(Agent(config, args.heartbeat).run())


if __name__ == "__main__":
    main()
