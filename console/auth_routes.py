"""Console login/logout pages and the account API.

The login form has no session to carry a CSRF token yet, so it uses a double-submit token: a random
value in a cookie scoped to the login path and the same value in a hidden field.
"""

from __future__ import annotations

import hmac
import math
import secrets
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from console.accounts import Account, normalise_username
from console.auth import (
    COOKIE,
    LOGIN_PATH,
    ConsoleAuth,
    client_address,
    console_auth,
    current_account,
    form_fields,
    require,
    require_csrf,
    same_origin,
    set_session_cookie,
)
from console.login_limit import LoginBlocked
from console.sessions import ConsoleSession

LOGIN_COOKIE = "zhixun_console_login"
HOME = "/console"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True))
router = APIRouter(tags=["console"])
Outcome = Literal["success", "failure", "blocked"]


def safe_next(target: str) -> str:
    """`target` if it is a path on this site, else the console page: never an open redirect."""
    parts = urlsplit(target)
    local = target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc
    if not local or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return HOME
    return target


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _login_page(
    request: Request, next_path: str, *, error: str = "", username: str = "", status: int = 200
) -> Response:
    auth = console_auth(request)
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    context = {"csrf_token": token, "next": safe_next(next_path), "error": error, "username": username}
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    response.set_cookie(
        LOGIN_COOKIE, token, path=LOGIN_PATH, httponly=True, samesite="strict", secure=auth.secure_cookies
    )
    return _private(response)


def _audit_login(request: Request, auth: ConsoleAuth, username: str, role: str, outcome: Outcome) -> None:
    auth.audit.record(
        username,
        "login",
        "console",
        role=role,
        detail={"outcome": outcome},
        client=client_address(request),
    )


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_page(request: Request, next_path: Annotated[str, Query(alias="next")] = HOME) -> Response:
    return _login_page(request, next_path)


@router.post(LOGIN_PATH, response_class=HTMLResponse)
def login(request: Request, form: Annotated[dict[str, str], Depends(form_fields)]) -> Response:
    auth = console_auth(request)
    next_path, username, password = form.get("next", HOME), form.get("username", ""), form.get("password", "")
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    genuine = (
        bool(cookie)
        and hmac.compare_digest(cookie.encode(), form.get("csrf_token", "").encode())
        and same_origin(request.headers, auth.public_base_url)
    )
    if not genuine:
        return _login_page(request, next_path, error="页面已过期，请重新登录。", username=username, status=403)
    key = normalise_username(username)
    if not key or not password:
        return _login_page(request, next_path, error="请输入用户名和密码。", username=username, status=422)
    try:
        auth.limiter.reserve(key, client_address(request))
    except LoginBlocked as blocked:
        _audit_login(request, auth, key, "unknown", "blocked")
        error = f"尝试次数过多，请{blocked.minutes}分钟后再试。"
        response = _login_page(request, next_path, error=error, username=username, status=429)
        response.headers["Retry-After"] = str(math.ceil(blocked.retry_after))
        return response
    account = auth.accounts.authenticate(key, password)
    if account is None:
        _audit_login(request, auth, key, "unknown", "failure")
        return _login_page(request, next_path, error="用户名或密码错误。", username=username, status=401)
    auth.limiter.clear(key)
    previous = request.cookies.get(COOKIE)
    if previous:
        auth.sessions.delete(previous)
    token, _ = auth.sessions.create(account.id)
    _audit_login(request, auth, key, account.role, "success")
    response = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(response, token, auth.secure_cookies)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return _private(response)


@router.post("/console/logout")
def logout(request: Request, _: Annotated[ConsoleSession, Depends(require_csrf)]) -> Response:
    console_auth(request).sessions.delete(request.cookies[COOKIE])
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return _private(response)


@router.get("/api/console/me")
def me(
    account: Annotated[Account, Depends(current_account)], session: Annotated[ConsoleSession, Depends(require_csrf)]
) -> Response:
    """The logged-in account, and the CSRF token the page's scripts send in `X-CSRF-Token`."""
    return _private(JSONResponse({"account": account.to_json(), "csrf_token": session.csrf_token}))


@router.get("/api/console/accounts")
def accounts(request: Request, _: Annotated[Account, Depends(require("supervise", "manage_accounts"))]) -> Response:
    """All console accounts (supervisors and admins)."""
    listed = [a.to_json() for a in console_auth(request).accounts.list()]
    return _private(JSONResponse({"accounts": listed}))
