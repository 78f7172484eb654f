"""Shared fixtures: a real app on a real port (uvicorn in a thread), real SQLite/PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from bot.queues import QUEUES_FILE
from zhixun.settings import RasaSettings, Settings

ADMIN_TOKEN = "test-admin-token"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def always_open(path: Path) -> Path:
    """The shipped queues with round-the-clock hours, so tests do not depend on the time they run."""
    text = QUEUES_FILE.read_text(encoding="utf-8")
    text = text.replace('[["09:00", "12:00"], ["13:30", "17:30"]]', '[["00:00", "23:59:59"]]')
    text = text.replace('[["08:30", "20:00"]]', '[["00:00", "23:59:59"]]').replace(
        '[["09:00", "17:00"]]', '[["00:00", "23:59:59"]]'
    )
    path.write_text(text + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no browser download). Per module: while Playwright's sync
    API is running it owns the main thread's event loop, and other tests need asyncio.run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, object]:
    from zhixun.app import create_app

    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", ws_max_size=65536)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return server, thread, app
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app answering from the KB alone (Rasa disabled): the path taken whenever Rasa is down."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'zhixun.db'}",
        admin_token=ADMIN_TOKEN,
        port=port,
        chat={"rate_per_second": 20.0, "rate_burst": 60},
        rasa={"enabled": False},
    )
    server, thread, app = _serve(settings)
    yield LiveServer(f"http://127.0.0.1:{port}", settings, app)
    server.should_exit = True
    thread.join(timeout=10)


PASSWORD = "correct-horse-9"  # console accounts made by tests


def login(http: httpx.Client, username: str, password: str, next_path: str | None = None) -> httpx.Response:
    """Log in through the console's login form, as a browser does (its double-submit CSRF token included)."""
    page = http.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    form = {"username": username, "password": password, "csrf_token": token.group(1)}
    if next_path is not None:
        form["next"] = next_path
    return http.post("/console/login", data=form)


class ConsoleUser:
    """A logged-in console account over HTTP (CSRF token sent on writes) and its live socket."""

    def __init__(self, server: LiveServer, username: str):
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=60)
        assert login(self.http, username, PASSWORD).status_code in (200, 303)
        self.csrf = self.http.get("/api/console/me").json()["csrf_token"]

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params=params)  # type: ignore[arg-type]

    def post(self, path: str, body: dict | None = None, csrf: str | None = None) -> httpx.Response:
        return self.send("POST", path, body, csrf)

    def send(self, method: str, path: str, body: dict | None = None, csrf: str | None = None) -> httpx.Response:
        token = csrf if csrf is not None else self.csrf
        return self.http.request(method, path, json=body or {}, headers={"X-CSRF-Token": token})

    def socket(self):
        from websockets.sync.client import connect

        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        url = self.server.base_url.replace("http://", "ws://") + "/console/ws"
        return connect(url, additional_headers={"Cookie": cookie, "Origin": self.server.base_url})


@contextmanager
def console_server(tmp: Path, **overrides: object) -> Iterator[LiveServer]:
    """The app on a real port, KB answers only, queues open round the clock: for console tests."""
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'zhixun.db'}",
        port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        rasa={"enabled": False},
        chat={"rate_per_second": 50.0, "rate_burst": 200},
        escalation={"queues_file": always_open(tmp / "queues.yml")},
        **overrides,  # type: ignore[arg-type]
    )
    server, thread, app = _serve(settings)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class DialogueServer(LiveServer):
    rasa: object


@pytest.fixture(scope="session")
def dialogue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DialogueServer]:
    """The whole service: the app plus a real Rasa server (trained model from `make setup`) as a child process."""
    from bot.rasa_process import RasaLaunch, RasaProcess
    from bot.rasa_training import latest_model

    tmp = tmp_path_factory.mktemp("dialogue")
    port, rasa_port = free_port(), free_port()
    rasa_settings = RasaSettings(
        port=rasa_port, action_token="test-action-token", tracker_url=f"sqlite:///{tmp / 'tracker.db'}"
    )
    model = latest_model(rasa_settings.models_dir)
    assert model is not None, "no trained Rasa model: run `make setup`"
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'zhixun.db'}",
        admin_token=ADMIN_TOKEN,
        port=port,
        chat={"rate_per_second": 50.0, "rate_burst": 200},
        rasa=rasa_settings,
        public_base_url=f"http://127.0.0.1:{port}",
        escalation={"queues_file": always_open(tmp / "queues.yml")},
    )
    rasa = RasaProcess(RasaLaunch.for_app(rasa_settings, model, port, rasa_settings.action_token, tmp), check_every=0.5)
    rasa.start()
    server, thread, app = _serve(settings)
    try:
        assert rasa.wait_healthy(240), (tmp / "log" / "rasa.log").read_text()[-3000:]
        yield DialogueServer(f"http://127.0.0.1:{port}", settings, app, rasa)
    finally:
        rasa.stop()
        server.should_exit = True
        thread.join(timeout=10)
