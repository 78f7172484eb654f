"""`make bench`: `/api/chat` turn latency and throughput against a running service on loopback.

    python -m bench.chat_latency                 # starts `zhixun run` on a free port with a scratch database
    python -m bench.chat_latency --url URL --pid PID   # measure a service you started yourself

Each simulated citizen holds conversations of 8 turns with no pause between
turns (a closed loop: harsher than real typing): a question drawn from the
in-scope dev set, then a follow-up about it (要多久 / 在哪里办 …), and so on. Every turn
goes through Rasa (NLU, policies, the app's custom actions); questions about
items with a scenario start the guided form. Prints p50/p95/p99 latency and
turns/s at 1, 10 and 50 concurrent conversations, and the resident memory of
the app and its Rasa child together.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from knowledge_base.calibrate import read_dev_set

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process and its children (Rasa), in MiB."""
    current = peak = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        lines = Path(f"/proc/{each}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        current += int(fields["VmRSS"].split()[0]) / 1024
        peak += int(fields["VmHWM"].split()[0]) / 1024
    return current, peak


FOLLOW_UPS = ["要多久", "在哪里办", "要钱吗", "需要带什么材料", "几点上班"]


TURNS_PER_CONVERSATION = 8  # then the citizen starts a new conversation, as real sessions are short


async def citizen(
    client: httpx.AsyncClient, questions: list[str], turns: int, latencies: list[float], think: float = 0.0
) -> None:
    conversation_id = None
    for turn in range(turns):
        if think:
            await asyncio.sleep(random.expovariate(1 / think))
        if turn % TURNS_PER_CONVERSATION == 0:
            conversation_id = None
        body = {"text": random.choice(questions if turn % 2 == 0 else FOLLOW_UPS)}
        if conversation_id:
            body["conversation_id"] = conversation_id
        start = time.perf_counter()
        response = await client.post("/api/chat", json=body)
        latencies.append(time.perf_counter() - start)
        response.raise_for_status()
        conversation_id = response.json()["conversation_id"]


async def load(
    url: str, questions: list[str], concurrency: int, turns: int, think: float = 0.0
) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await citizen(client, questions, 3, [])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*[citizen(client, questions, turns, latencies, think) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return latencies, elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(
    env: dict[str, str], ready: Callable[[dict], bool] = lambda health: True, seconds: float = 180
) -> subprocess.Popen:
    """`zhixun run` with these ZHIXUN_* settings, once its /health satisfies `ready`."""
    url = f"http://127.0.0.1:{env['ZHIXUN_PORT']}"
    process = subprocess.Popen(
        [sys.executable, "-m", "zhixun.cli", "run"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready(httpx.get(url + "/health", timeout=1).json()):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"service did not start within {seconds:.0f} s")


def start_service() -> tuple[subprocess.Popen, str]:
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="zhixun-bench-"))
    env = {
        "ZHIXUN_DATABASE_URL": f"sqlite:///{scratch / 'bench.db'}",
        "ZHIXUN_PORT": str(port),
        "ZHIXUN_CHAT__RATE_PER_SECOND": "1000000",
        "ZHIXUN_CHAT__RATE_BURST": "1000000",
        "ZHIXUN_RASA__PORT": str(free_port()),
        "ZHIXUN_RASA__TRACKER_URL": f"sqlite:///{scratch / 'tracker.db'}",
    }
    # The app answers at once; Rasa takes a while to load its model.
    return spawn(env, lambda health: health.get("dialogue") == "rasa"), f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--turns", type=int, default=40, help="turns per conversation at each level")
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument(
        "--think", type=float, default=2.0, help="mean seconds a citizen takes to read and type (second pass)"
    )
    args = parser.parse_args(argv)
    questions = [q.text for q in read_dev_set() if q.in_scope]
    random.seed(1)
    process = None
    url, pid = args.url, args.pid
    if url is None:
        process, url = start_service()
        pid = process.pid
    try:
        dialogue = httpx.get(url + "/health", timeout=5).json().get("dialogue")
        print(f"service {url} (dialogue: {dialogue}), {os.cpu_count()} CPU cores, {len(questions)} distinct questions")
        print("\n| concurrent conversations | pause between turns | turns | p50 ms | p95 ms | p99 ms | turns/s |")
        print("|---|---|---|---|---|---|---|")
        for think in (0.0, args.think):
            for level in (int(x) for x in args.levels.split(",")):
                turns = max(args.turns // max(level // 10, 1), 5)
                latencies, elapsed = asyncio.run(load(url, questions, level, turns, think))
                ms = np.array(latencies) * 1000
                p50, p95, p99 = np.percentile(ms, [50, 95, 99])
                pause = f"{think:g} s (mean)" if think else "none"
                print(
                    f"| {level} | {pause} | {len(ms)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {len(ms) / elapsed:.1f} |"
                )
        if pid:
            current, peak = rss_mb(pid)
            print(f"\napp + Rasa RSS: {current:.0f} MiB now, {peak:.0f} MiB peak (sum of processes)")
    finally:
        if process:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
