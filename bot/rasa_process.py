"""Rasa as a supervised child process: started, health-checked, restarted if it dies, stopped cleanly.

`zhixun run` owns one `RasaProcess`; app workers only talk to it over HTTP, so
a worker never waits for Rasa to start and keeps answering from the KB while
Rasa is down (bot/service.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.rasa_training import CREDENTIALS, ENDPOINTS, RASA_BIN, RASA_ENV
from zhixun.settings import RasaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RasaLaunch:
    model: Path
    port: int
    action_url: str
    action_token: str
    tracker_url: str
    log_file: Path
    workdir: Path

    @classmethod
    def for_app(cls, rasa: RasaSettings, model: Path, app_port: int, token: str, var_dir: Path) -> RasaLaunch:
        """Rasa beside an app on `app_port`, which serves its actions; logs and scratch files under `var_dir`."""
        return cls(
            model=model,
            port=rasa.port,
            action_url=f"http://127.0.0.1:{app_port}/webhook",
            action_token=token,
            tracker_url=rasa.tracker_url,
            log_file=var_dir / "log" / "rasa.log",
            workdir=var_dir / "rasa",
        )


def prepare_sqlite_tracker(url: str) -> None:
    """Put a SQLite tracker store in WAL mode (the mode is stored in the file, so Rasa inherits it):
    one sync per turn instead of several, and readers stop blocking the writer."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


class RasaProcess:
    def __init__(self, launch: RasaLaunch, *, check_every: float = 2.0, max_backoff: float = 30.0):
        self.launch = launch
        self.check_every, self.max_backoff = check_every, max_backoff
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        # One client for every health check: building one loads the CA bundle (tens of ms of GIL-holding
        # work every few seconds, seen as latency spikes in chat turns).
        self._http = httpx.Client(timeout=1.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.launch.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        prepare_sqlite_tracker(self.launch.tracker_url)
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="rasa-watch", daemon=True)
        self._watcher.start()

    def healthy(self) -> bool:
        try:
            return self._http.get(f"{self.url}/").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self) -> None:
        launch = self.launch
        launch.log_file.parent.mkdir(parents=True, exist_ok=True)
        launch.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **RASA_ENV,
            "ZHIXUN_ACTION_URL": launch.action_url,
            "ZHIXUN_ACTION_TOKEN": launch.action_token,
            "ZHIXUN_TRACKER_URL": launch.tracker_url,
        }
        command = [
            str(RASA_BIN),
            "run",
            "--model",
            str(launch.model),
            "--endpoints",
            str(ENDPOINTS),
            "--credentials",
            str(CREDENTIALS),
            "--interface",
            "127.0.0.1",
            "--port",
            str(launch.port),
        ]
        with launch.log_file.open("ab") as out, self._lock:
            self._process = subprocess.Popen(
                command, cwd=launch.workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        log.info("rasa started (pid %s) on port %s", self._process.pid, launch.port)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.wait(self.check_every):
            with self._lock:
                process = self._process
            if process is None or process.poll() is None:
                if self.healthy():
                    backoff = 1.0
                continue
            log.warning("rasa exited with %s; restarting in %.0f s", process.returncode, backoff)
            if self._stopping.wait(backoff):
                return
            self.restarts += 1
            self._spawn()
            backoff = min(backoff * 2, self.max_backoff)
