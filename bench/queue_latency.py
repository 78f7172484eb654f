"""`make bench` (second part): how fast a queue change reaches an agent's console with 200 citizens waiting.

    python -m bench.queue_latency            # starts `zhixun run` (KB only) on a free port with a scratch database

One agent console is connected to `/console/ws`. Citizens ask for a person
(「转人工」 through `/api/chat`) until 200 are waiting; then, with the queue that
long, more citizens arrive one every 50 ms. For each arrival we time, from the
moment the citizen's request is sent: the queue event reaching the console's
socket, and that plus the console re-reading its board (`GET /api/console/board`,
which lists every waiting citizen), which is what the agent sees update.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

from bench.chat_latency import free_port, rss_mb, spawn
from console.accounts import AccountStore
from zhixun.database import make_engine

PASSWORD = "bench-password-1"
ROUND_THE_CLOCK = """general: general
queues:
  - id: general
    name: 综合坐席
    departments: []
    hours: [["00:00", "23:59:59"]]
    weekend_hours: [["00:00", "23:59:59"]]
"""


def start_service(scratch: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    database = f"sqlite:///{scratch / 'bench.db'}"
    queues = scratch / "queues.yml"
    queues.write_text(ROUND_THE_CLOCK, encoding="utf-8")
    env = {
        "ZHIXUN_DATABASE_URL": database,
        "ZHIXUN_PORT": str(port),
        "ZHIXUN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ZHIXUN_RASA__ENABLED": "false",
        "ZHIXUN_CHAT__RATE_PER_SECOND": "1000000",
        "ZHIXUN_CHAT__RATE_BURST": "1000000",
        "ZHIXUN_ESCALATION__QUEUES_FILE": str(queues),
    }
    return spawn(env), f"http://127.0.0.1:{port}", database


async def measure(url: str, waiting: int, arrivals: int) -> dict[str, list[float]]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as agent,
        httpx.AsyncClient(base_url=url, timeout=60) as citizens,
    ):
        page = await agent.get("/console/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        await agent.post("/console/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
        cookie = "; ".join(f"{k}={v}" for k, v in agent.cookies.items())
        seen: dict[str, float] = {}
        async with websockets.connect(
            url.replace("http://", "ws://") + "/console/ws", additional_headers={"Cookie": cookie, "Origin": url}
        ) as socket:

            async def listen() -> None:
                async for raw in socket:
                    frame = json.loads(raw)
                    if frame.get("type") == "escalation" and frame.get("event") == "escalation":
                        seen[frame["escalation"]["conversation_id"]] = time.perf_counter()

            listener = asyncio.create_task(listen())
            for start in range(0, waiting, 20):  # fill the queue, 20 citizens at a time
                await asyncio.gather(
                    *[
                        citizens.post("/api/chat", json={"text": "转人工"})
                        for _ in range(start, min(waiting, start + 20))
                    ]
                )
            event_ms, board_ms, seen_ms = [], [], []
            for _ in range(arrivals):
                sent = time.perf_counter()
                response = await citizens.post("/api/chat", json={"text": "我要转人工"})
                conversation_id = response.json()["conversation_id"]
                deadline = time.perf_counter() + 10
                while conversation_id not in seen:
                    if listener.done() or time.perf_counter() > deadline:
                        raise RuntimeError(f"the console never heard of {conversation_id}: {listener}")
                    await asyncio.sleep(0.001)
                event_ms.append((seen[conversation_id] - sent) * 1000)
                board_start = time.perf_counter()
                board = (await agent.get("/api/console/board")).json()
                board_ms.append((time.perf_counter() - board_start) * 1000)
                seen_ms.append((time.perf_counter() - sent) * 1000)
                assert any(i["conversation_id"] == conversation_id for q in board["queues"] for i in q["waiting"])
                await asyncio.sleep(0.05)
            listener.cancel()
    return {
        "queue event at the console": event_ms,
        "board re-read": board_ms,
        "event + board (what the agent sees)": seen_ms,
    }


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="zhixun-queue-bench-"))
    process, url, database = start_service(scratch)
    try:
        AccountStore(make_engine(database)).create("bench", "压测坐席", PASSWORD, "agent", departments=["general"])
        results = asyncio.run(measure(url, waiting=200, arrivals=100))
        print("One agent console, 200 citizens already waiting, 100 more arriving (ms from the citizen's request):\n")
        print(f"| {'measure':<38} | {'p50':>7} | {'p95':>7} | {'p99':>7} |")
        print(f"|{'-' * 40}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
        for name, values in results.items():
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            print(f"| {name:<38} | {p50:7.1f} | {p95:7.1f} | {p99:7.1f} |")
        current, peak = rss_mb(process.pid)
        print(f"\napp RSS {current:.0f} MiB (peak {peak:.0f} MiB)")
    finally:
        process.terminate()
        process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
