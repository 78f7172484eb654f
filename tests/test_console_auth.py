"""Console accounts, sessions, CSRF and login limits, over real HTTP against real app instances."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from argon2 import PasswordHasher
from fastapi import WebSocket
from fastapi.routing import iter_route_contexts
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.audit import AuditLog
from console.accounts import AccountExists, AccountRow, AccountStore
from console.auth import COOKIE, LOGIN_PATH, UNSAFE_METHODS, account_from_websocket, require_csrf, set_session_cookie
from console.auth_routes import safe_next
from console.sessions import SessionRow
from tests.conftest import PASSWORD, LiveServer, _serve, free_port, login
from zhixun.database import make_engine
from zhixun.settings import ConsoleSettings, RasaSettings, Settings

pytestmark = pytest.mark.slow

StartServer = Callable[..., LiveServer]


@pytest.fixture
def accounts(database_url: str) -> Iterator[AccountStore]:
    engine = make_engine(database_url)
    store = AccountStore(engine)
    store.create_tables()
    yield store
    engine.dispose()


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[StartServer]:
    """Start app instances on real ports, all on one database (an empty KB: start-up in seconds)."""
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    running = []

    def start(**console: Any) -> LiveServer:
        port = free_port()
        settings = Settings(
            database_url=database_url,
            port=port,
            kb_data_dir=kb_dir,
            public_base_url=f"http://127.0.0.1:{port}",
            rasa=RasaSettings(enabled=False),
            console=ConsoleSettings(**console),
        )
        server, thread, app = _serve(settings)
        running.append((server, thread))
        return LiveServer(f"http://127.0.0.1:{port}", settings, app)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30)


def csrf_token(http: httpx.Client) -> str:
    response = http.get("/api/console/me")
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def add(accounts: AccountStore, username: str, role: str = "agent", **extra):
    return accounts.create(username, extra.pop("name", "王芳"), PASSWORD, role, **extra)  # type: ignore[arg-type]


# --- accounts and roles (no server) ---------------------------------------------------------------


def test_roles_permissions_and_departments(accounts: AccountStore):
    agent = add(accounts, "wangfang", departments=["general", "police"])
    clerk = add(accounts, "lina", name="李娜", permissions=["view_pii"])
    boss = add(accounts, "zhaolei", "supervisor", name="赵磊")
    admin = add(accounts, "root", "admin", name="管理员")
    assert agent.can("chat") and not agent.can("supervise") and not agent.can("view_pii")
    assert clerk.can("view_pii") and not clerk.can("export")
    assert boss.permissions == {"chat", "supervise", "view_pii", "export", "edit_kb"}
    assert admin.can("manage_accounts") and boss.permissions < admin.permissions
    assert agent.serves("police") and not agent.serves("tax")
    assert boss.serves("tax") and admin.serves("tax")
    assert agent.capacity == 3 and agent.status == "offline" and agent.active
    accounts.set_status(agent.id, "online")
    assert accounts.get(agent.id).status == "online"  # type: ignore[union-attr]
    assert [a.username for a in accounts.list()] == ["lina", "root", "wangfang", "zhaolei"]
    assert accounts.by_username(" WangFang ") == accounts.get(agent.id)


def test_account_validation(accounts: AccountStore):
    add(accounts, "wangfang")
    with pytest.raises(AccountExists):
        add(accounts, "WANGFANG")
    with pytest.raises(ValueError, match="role"):
        add(accounts, "x1", "boss")
    with pytest.raises(ValueError, match="permission"):
        add(accounts, "x2", permissions=["root"])
    with pytest.raises(ValueError, match="too short"):
        accounts.create("x3", "王芳", "short", "agent")
    with pytest.raises(ValueError, match="username"):
        add(accounts, "王芳")
    with pytest.raises(ValueError, match="status"):
        accounts.set_status(1, "asleep")  # type: ignore[arg-type]


def test_password_hash_is_argon2id_and_outdated_parameters_are_rehashed(accounts: AccountStore):
    cheap = AccountStore(accounts.engine, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    account = cheap.create("wangfang", "王芳", PASSWORD, "agent")
    with Session(accounts.engine) as session:
        old = session.get(AccountRow, account.id).password_hash  # type: ignore[union-attr]
    assert old.startswith("$argon2id$") and "m=8192,t=1,p=1" in old
    assert accounts.authenticate("wangfang", "wrong password") is None
    assert accounts.authenticate("wangfang", PASSWORD) == account
    with Session(accounts.engine) as session:
        new = session.get(AccountRow, account.id).password_hash  # type: ignore[union-attr]
    assert new != old and new.startswith("$argon2id$") and not PasswordHasher().check_needs_rehash(new)
    assert accounts.authenticate("nobody", PASSWORD) is None
    with Session(accounts.engine) as session, session.begin():
        session.execute(update(AccountRow).values(active=False))
    assert accounts.authenticate("wangfang", PASSWORD) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/console/queue?dept=police", "/console/queue?dept=police"),
        ("https://evil.example/", "/console"),
        ("//evil.example/", "/console"),
        ("/\\evil.example", "/console"),
        ("javascript:alert(1)", "/console"),
        ("/console\r\nSet-Cookie: x=1", "/console"),
        ("", "/console"),
    ],
)
def test_next_is_only_ever_a_local_path(target: str, expected: str):
    assert safe_next(target) == expected


def test_secure_cookie_setting_marks_the_cookie_secure():
    from fastapi.responses import Response

    response = Response()
    set_session_cookie(response, "token", secure=True)
    assert "; secure" in response.headers["set-cookie"].lower()


# --- login and sessions over HTTP -----------------------------------------------------------------


def test_login_sets_a_strict_httponly_session_cookie(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang", departments=["general", "police"])
    with client(server) as http:
        page = http.get(LOGIN_PATH)
        assert page.status_code == 200 and "用户名" in page.text and "密码" in page.text
        response = login(http, "wangfang", PASSWORD)
        assert response.status_code == 303 and response.headers["location"] == "/console"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags
        home = http.get("/console")
        assert home.status_code == 200 and home.headers["cache-control"] == "no-store"
        me = http.get("/api/console/me").json()
        assert me["account"]["username"] == "wangfang" and me["account"]["departments"] == ["general", "police"]
        assert me["csrf_token"] and "password_hash" not in str(me)
        token = http.cookies[COOKIE]
    with Session(accounts.engine) as session:
        rows = session.scalars(select(SessionRow)).all()
    assert [r.id for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]  # the raw token is never stored


def test_wrong_password_and_unknown_user_are_refused_alike(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    with client(server) as http:
        for username, password in [("wangfang", "not-the-password"), ("nobody", PASSWORD)]:
            response = login(http, username, password)
            assert response.status_code == 401 and "用户名或密码错误" in response.text
            assert COOKIE not in http.cookies
        assert http.get("/api/console/me").json() == {"error": {"code": "not_logged_in", "message": "请先登录。"}}
    outcomes = [(e.actor, e.detail["outcome"]) for e in AuditLog(accounts.engine).entries(action="login")]
    assert outcomes == [("wangfang", "failure"), ("nobody", "failure")]


def test_not_logged_in_pages_redirect_and_apis_answer_401(start_server: StartServer):
    server = start_server()
    with client(server) as http:
        page = http.get("/console", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/console/login?next=/console"
        api = http.get("/api/console/me", headers={"Accept": "text/html"})
        assert api.status_code == 401 and api.json()["error"]["code"] == "not_logged_in"


def test_failed_logins_are_limited_across_app_instances(start_server: StartServer, accounts: AccountStore):
    first, second = start_server(), start_server()
    add(accounts, "wangfang")
    add(accounts, "lina", name="李娜")
    with client(first) as a, client(second) as b:
        for _ in range(5):
            assert login(a, "wangfang", "guess-guess").status_code == 401
        blocked = login(b, "wangfang", PASSWORD)  # the right password, on the other instance
        assert blocked.status_code == 429 and "尝试次数过多，请15分钟后再试" in blocked.text
        assert 14 * 60 < int(blocked.headers["retry-after"]) <= 15 * 60
        assert login(a, "wangfang", PASSWORD).status_code == 429
        assert login(b, "lina", PASSWORD).status_code == 303  # other usernames are not locked out
    outcomes = [e.detail["outcome"] for e in AuditLog(accounts.engine).entries(action="login")]
    assert outcomes == ["failure"] * 5 + ["blocked", "blocked", "success"]


def test_parallel_guesses_cannot_pass_the_limit(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")

    def guess(_: int) -> int:
        with client(server) as http:
            return login(http, "wangfang", "guess-guess").status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(guess, range(20)))
    assert set(statuses) <= {401, 429} and statuses.count(401) <= 5


def test_a_successful_login_clears_the_username_failures(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    with client(server) as http:
        for _ in range(4):
            assert login(http, "wangfang", "guess-guess").status_code == 401
        assert login(http, "wangfang", PASSWORD).status_code == 303
        for _ in range(4):
            assert login(http, "wangfang", "guess-guess").status_code == 401
        assert login(http, "wangfang", PASSWORD).status_code == 303


def test_failed_logins_are_limited_per_client_address(start_server: StartServer, accounts: AccountStore):
    server = start_server(login_max_failures_per_client=3)
    add(accounts, "wangfang")
    with client(server) as http:
        for name in ["a1", "a2", "a3"]:
            assert login(http, name, "guess-guess").status_code == 401
        blocked = login(http, "wangfang", PASSWORD)
        assert blocked.status_code == 429 and "分钟后再试" in blocked.text


def test_expired_sessions_are_refused(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for column, value in [("expires_at", past), ("created_at", past - dt.timedelta(hours=12))]:
        with client(server) as http:
            assert login(http, "wangfang", PASSWORD).status_code == 303
            assert http.get("/api/console/me").status_code == 200
            with Session(accounts.engine) as session, session.begin():
                session.execute(update(SessionRow).values({column: value}))
            assert http.get("/api/console/me").json()["error"]["code"] == "not_logged_in"
            assert http.get("/console", headers={"Accept": "text/html"}).status_code == 303
    with Session(accounts.engine) as session:
        assert session.scalars(select(SessionRow)).all() == []


def test_idle_timeout_slides_with_use(start_server: StartServer, accounts: AccountStore):
    server = start_server(session_idle_minutes=0.05)  # 3 seconds
    add(accounts, "wangfang")
    with client(server) as http:
        assert login(http, "wangfang", PASSWORD).status_code == 303
        for _ in range(4):  # 6 s in all, never 3 s idle
            time.sleep(1.5)
            assert http.get("/api/console/me").status_code == 200
        time.sleep(3.5)
        assert http.get("/api/console/me").status_code == 401


# --- CSRF and Origin ------------------------------------------------------------------------------


def test_state_changing_requests_need_the_session_csrf_token(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    with client(server) as http:
        assert login(http, "wangfang", PASSWORD).status_code == 303
        token = csrf_token(http)
        for headers in [{}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": token, "Origin": "https://evil.example"}]:
            refused = http.post("/console/logout", headers=headers)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        assert http.post("/console/logout", data={"csrf_token": "forged"}).status_code == 403
        assert http.get("/api/console/me").status_code == 200  # still logged in
        out = http.post("/console/logout", data={"csrf_token": token}, headers={"Origin": server.base_url})
        assert out.status_code == 303 and out.headers["location"] == LOGIN_PATH
        assert http.get("/api/console/me").status_code == 401
        assert login(http, "wangfang", PASSWORD).status_code == 303
        assert http.post("/console/logout", headers={"X-CSRF-Token": csrf_token(http)}).status_code == 303


def test_login_form_needs_its_double_submit_token(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    form = {"username": "wangfang", "password": PASSWORD}
    with client(server) as http:
        refused = http.post(LOGIN_PATH, data={**form, "csrf_token": "made-up"})  # no login cookie at all
        assert refused.status_code == 403 and "页面已过期" in refused.text
        page = http.get(LOGIN_PATH)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert http.post(LOGIN_PATH, data={**form, "csrf_token": "x" + token}).status_code == 403
        foreign = http.post(LOGIN_PATH, data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert http.post(LOGIN_PATH, data={**form, "csrf_token": token}).status_code == 303


def test_every_console_write_route_checks_csrf(start_server: StartServer):
    """Guards routes added later too: a state-changing console route must depend on require_csrf."""
    app = start_server().app

    def calls(dependant) -> set:
        return {dependant.call} | {c for d in dependant.dependencies for c in calls(d)}

    checked = 0
    for route in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        dependant = getattr(route, "dependant", None)
        if dependant is None or not (route.methods or set()) & UNSAFE_METHODS or route.path == LOGIN_PATH:
            continue
        if (route.path or "").startswith(("/console", "/api/console")):
            assert require_csrf in calls(dependant), f"{route.path} does not check CSRF"
            checked += 1
    assert checked >= 1


# --- permissions, redirects, escaping -------------------------------------------------------------


def test_account_list_needs_supervise_or_manage_accounts(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    add(accounts, "zhaolei", "supervisor", name="赵磊")
    add(accounts, "root", "admin", name="管理员")
    add(accounts, "lina", name="李娜", permissions=["manage_accounts"])
    expected = {"wangfang": 403, "zhaolei": 200, "root": 200, "lina": 200}
    for username, status in expected.items():
        with client(server) as http:
            assert login(http, username, PASSWORD).status_code == 303
            response = http.get("/api/console/accounts")
            assert response.status_code == status, username
            if status == 403:
                assert response.json()["error"] == {"code": "permission_denied", "message": "您没有权限进行此操作。"}
            else:
                listed = response.json()["accounts"]
                assert {a["username"] for a in listed} == set(expected)
                assert "password" not in response.text and "argon2" not in response.text


def test_next_redirects_only_to_local_paths(start_server: StartServer, accounts: AccountStore):
    server = start_server()
    add(accounts, "wangfang")
    for target, location in [
        ("https://evil.example/phish", "/console"),
        ("//evil.example", "/console"),
        ("/console?tab=queue", "/console?tab=queue"),
    ]:
        with client(server) as http:
            assert login(http, "wangfang", PASSWORD, next_path=target).headers["location"] == location
    with client(server) as http:
        page = http.get(LOGIN_PATH, params={"next": "https://evil.example"})
        assert 'name="next" value="/console"' in page.text


def test_login_page_escapes_what_was_typed(start_server: StartServer):
    server = start_server()
    with client(server) as http:
        page = http.get(LOGIN_PATH)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        form = {"username": '"><script>x</script>', "password": "guess-guess", "csrf_token": token}
        failed = http.post(LOGIN_PATH, data=form)
        assert "<script>x" not in failed.text and "&#34;&gt;&lt;script&gt;" in failed.text


# --- WebSocket ------------------------------------------------------------------------------------


def test_websocket_helper_reads_the_cookie_and_checks_origin(start_server: StartServer, accounts: AccountStore):
    server = start_server()

    async def whoami(websocket: WebSocket) -> None:
        account = await account_from_websocket(websocket)
        if account is None:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        await websocket.send_text(account.display_name)
        await websocket.close()

    server.app.add_api_websocket_route("/ws/test-console", whoami)  # type: ignore[attr-defined]
    add(accounts, "wangfang")
    with client(server) as http:
        assert login(http, "wangfang", PASSWORD).status_code == 303
        cookie = f"{COOKIE}={http.cookies[COOKIE]}"
    url = server.base_url.replace("http://", "ws://") + "/ws/test-console"

    async def connect(headers: dict[str, str]) -> str:
        async with websockets.connect(url, additional_headers=headers) as ws:
            return str(await ws.recv())

    assert asyncio.run(connect({"Cookie": cookie, "Origin": server.base_url})) == "王芳"
    for headers in [{"Origin": server.base_url}, {"Cookie": cookie, "Origin": "https://evil.example"}]:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            asyncio.run(connect(headers))


# --- CLI ------------------------------------------------------------------------------------------


def zhixun(*args: str, db: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"ZHIXUN_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin", "HOME": str(db.parent)}
    return subprocess.run(
        [sys.executable, "-m", "zhixun.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_cli_adds_lists_and_resets_users(tmp_path: Path):
    db = tmp_path / "console.db"
    added = zhixun(
        "console", "add-user", "wangfang", "--name", "王芳", "--role", "agent", "--departments", "general,police",
        "--capacity", "4", "--password-stdin", db=db, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = zhixun("console", "add-user", "wangfang", "--name", "王芳", "--password-stdin", db=db, stdin=PASSWORD)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = zhixun("console", "list-users", db=db).stdout.splitlines()
    assert listed[1].split("\t") == ["wangfang", "王芳", "agent", "general,police", "4", "offline", "True"]
    store = AccountStore(make_engine(f"sqlite:///{db}"))
    assert store.authenticate("wangfang", PASSWORD) is not None
    reset = zhixun("console", "set-password", "wangfang", "--password-stdin", db=db, stdin="another-secret-1\n")
    assert reset.returncode == 0, reset.stderr
    assert store.authenticate("wangfang", PASSWORD) is None
    assert store.authenticate("wangfang", "another-secret-1") is not None
    assert zhixun("console", "set-password", "nobody", "--password-stdin", db=db, stdin="x" * 9).returncode == 1
    edits = [e.detail["change"] for e in AuditLog(store.engine).entries(action="edit")]
    assert edits == ["account_created", "password_set"]
