"""`make bench`: `/api/chat` turn latency and throughput against a running service on loopback.

    python -m bench.chat_latency                 # starts `zhixun run` on a free port with a scratch database
    python -m bench.chat_latency --url URL --pid PID   # measure a service you started yourself

Each simulated citizen holds one conversation and asks questions one after
another (questions drawn from the in-scope dev set, so these are retrieval-only
answers). Prints p50/p95/p99 latency and turns/s at 1, 10 and 50 concurrent
conversations, and the server process's resident memory.
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
from pathlib import Path

import httpx
import numpy as np

from knowledge_base.calibrate import read_dev_set

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def citizen(client: httpx.AsyncClient, questions: list[str], turns: int, latencies: list[float]) -> None:
    conversation_id = None
    for _ in range(turns):
        body = {"text": random.choice(questions)}
        if conversation_id:
            body["conversation_id"] = conversation_id
        start = time.perf_counter()
        response = await client.post("/api/chat", json=body)
        latencies.append(time.perf_counter() - start)
        response.raise_for_status()
        conversation_id = response.json()["conversation_id"]


async def load(url: str, questions: list[str], concurrency: int, turns: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await citizen(client, questions, 3, [])  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*[citizen(client, questions, turns, latencies) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return latencies, elapsed


def start_service() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = Path(tempfile.mkdtemp(prefix="zhixun-bench-"))
    env = dict(
        os.environ,
        ZHIXUN_DATABASE_URL=f"sqlite:///{scratch / 'bench.db'}",
        ZHIXUN_PORT=str(port),
        ZHIXUN_CHAT__RATE_PER_SECOND="1000000",
        ZHIXUN_CHAT__RATE_BURST="1000000",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "zhixun.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("service did not start within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--turns", type=int, default=40, help="turns per conversation at each level")
    parser.add_argument("--levels", default="1,10,50")
    args = parser.parse_args(argv)
    questions = [q.text for q in read_dev_set() if q.in_scope]
    random.seed(1)
    process = None
    url, pid = args.url, args.pid
    if url is None:
        process, url = start_service()
        pid = process.pid
    try:
        print(f"service {url}, {os.cpu_count()} CPU cores, {len(questions)} distinct questions")
        print("\n| concurrent conversations | turns | p50 ms | p95 ms | p99 ms | turns/s |")
        print("|---|---|---|---|---|---|")
        for level in (int(x) for x in args.levels.split(",")):
            turns = max(args.turns // max(level // 10, 1), 5)
            latencies, elapsed = asyncio.run(load(url, questions, level, turns))
            ms = np.array(latencies) * 1000
            p50, p95, p99 = np.percentile(ms, [50, 95, 99])
            print(f"| {level} | {len(ms)} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {len(ms) / elapsed:.1f} |")
        if pid:
            current, peak = rss_mb(pid)
            print(f"\nserver RSS: {current:.0f} MiB now, {peak:.0f} MiB peak")
    finally:
        if process:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
