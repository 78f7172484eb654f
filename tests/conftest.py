"""Shared fixtures: a real app on a real port (uvicorn in a thread), real SQLite/PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from zhixun.settings import Settings

ADMIN_TOKEN = "test-admin-token"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs on SQLite and, where configured, on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = os.environ.get("ZHIXUN_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must test PostgreSQL too: set ZHIXUN_TEST_POSTGRES_URL (.ci/run does)")
        pytest.skip("ZHIXUN_TEST_POSTGRES_URL not set")
    from sqlalchemy import create_engine, text

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"zhixun_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    app: object

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/chat"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from zhixun.app import create_app

    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'zhixun.db'}",
        admin_token=ADMIN_TOKEN,
        port=port,
        chat={"rate_per_second": 20.0, "rate_burst": 60},
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=65536))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("server did not start")
    yield LiveServer(base, settings, app)
    server.should_exit = True
    thread.join(timeout=10)
