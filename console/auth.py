"""What console routes depend on: who is logged in, what they may do, and the CSRF check.

    account: Annotated[Account, Depends(current_account)]          # 401 if not logged in
    account: Annotated[Account, Depends(require("supervise"))]     # 403 without the permission

`current_account` also checks CSRF on POST/PUT/PATCH/DELETE (token in the `X-CSRF-Token` header or the
form field `csrf_token`, from `GET /api/console/me`), so every logged-in write is covered.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Engine
from starlette.datastructures import Headers

from bot.audit import AuditLog
from connectors.web.errors import ApiError, error_response
from console.accounts import PERMISSIONS, Account, AccountStore
from console.login_limit import LoginLimiter
from console.sessions import ConsoleSession, SessionStore
from zhixun.settings import Settings

COOKIE = "zhixun_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOGIN_PATH = "/console/login"


@dataclass(frozen=True)
class LoggedIn:
    account: Account
    session: ConsoleSession


@dataclass(frozen=True)
class ConsoleAuth:
    """The console's auth state, one per app (`app.state.console_auth`)."""

    accounts: AccountStore
    sessions: SessionStore
    limiter: LoginLimiter
    audit: AuditLog
    secure_cookies: bool
    public_base_url: str

    def resolve(self, token: str) -> LoggedIn | None:
        """The active account and live session of a cookie token."""
        session = self.sessions.resolve(token)
        account = self.accounts.get(session.account_id) if session else None
        if session is None or account is None or not account.active:
            return None
        return LoggedIn(account, session)


def install(app: FastAPI, engine: Engine, settings: Settings, audit: AuditLog) -> ConsoleAuth:
    console = settings.console
    auth = ConsoleAuth(
        accounts=AccountStore(engine),
        sessions=SessionStore(
            engine,
            idle=dt.timedelta(minutes=console.session_idle_minutes),
            absolute=dt.timedelta(minutes=console.session_absolute_minutes),
        ),
        limiter=LoginLimiter(
            engine,
            per_username=console.login_max_failures_per_user,
            per_client=console.login_max_failures_per_client,
            window=dt.timedelta(minutes=console.login_window_minutes),
        ),
        audit=audit,
        secure_cookies=console.secure_cookies,
        public_base_url=settings.public_base_url,
    )
    auth.accounts.create_tables()
    app.state.console_auth = auth
    app.add_exception_handler(LoginRequired, _login_required)
    return auth


def console_auth(request: Request) -> ConsoleAuth:
    return request.app.state.console_auth


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def same_origin(headers: Headers, public_base_url: str) -> bool:
    """False when Origin (or, without it, Referer) names a host other than this server's."""
    source = headers.get("origin") or headers.get("referer")
    if not source:
        return True
    allowed = {headers.get("host", "").lower(), urlsplit(public_base_url).netloc.lower()}
    host = urlsplit(source).netloc.lower()
    return bool(host) and host in allowed


def set_session_cookie(response: Response, token: str, secure: bool) -> None:
    # No Max-Age: the cookie ends with the browser; the server enforces the idle and absolute timeouts.
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="strict", secure=secure)


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form body's fields ({} for any other body); python-multipart is not a dependency."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_form", "表单内容不是有效的 UTF-8 编码。") from None
    fields: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=50):
        fields.setdefault(key, value)
    return fields


class LoginRequired(Exception):
    pass


async def _login_required(request: Request, _: Exception) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return error_response(401, "not_logged_in", "请先登录。")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/console"
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='/')}", status_code=303)


def _logged_in(request: Request) -> LoggedIn:
    token = request.cookies.get(COOKIE)
    found = console_auth(request).resolve(token) if token else None
    if found is None:
        raise LoginRequired
    return found


async def require_csrf(
    request: Request,
    logged_in: Annotated[LoggedIn, Depends(_logged_in)],
    form: Annotated[dict[str, str], Depends(form_fields)],
) -> ConsoleSession:
    """The session, after checking a state-changing request's CSRF token and Origin/Referer."""
    session = logged_in.session
    if request.method in UNSAFE_METHODS:
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
        if not (
            same_origin(request.headers, console_auth(request).public_base_url)
            and hmac.compare_digest(given.encode(), session.csrf_token.encode())
        ):
            raise ApiError(403, "csrf_failed", "页面已过期或请求来源不正确，请刷新页面后重试。")
    return session


def current_account(
    logged_in: Annotated[LoggedIn, Depends(_logged_in)], _: Annotated[ConsoleSession, Depends(require_csrf)]
) -> Account:
    return logged_in.account


def require(*permissions: str) -> Callable[..., Account]:
    """A dependency giving the current account if it has any of `permissions`, else 403."""
    unknown = set(permissions) - PERMISSIONS
    if not permissions or unknown:
        raise ValueError(f"require() needs known permissions; unknown: {sorted(unknown)}")

    def dependency(account: Annotated[Account, Depends(current_account)]) -> Account:
        if not any(account.can(p) for p in permissions):
            raise ApiError(403, "permission_denied", "您没有权限进行此操作。")
        return account

    return dependency


async def account_from_websocket(websocket: WebSocket) -> Account | None:
    """The logged-in account of a console WebSocket, before `accept()`; None: close it (code 1008)."""
    auth: ConsoleAuth = websocket.app.state.console_auth
    token = websocket.cookies.get(COOKIE)
    if not token or not same_origin(websocket.headers, auth.public_base_url):
        return None
    found = await run_in_threadpool(auth.resolve, token)
    return found.account if found else None
