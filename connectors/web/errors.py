"""Every error the web API returns has one shape: {"error": {"code", "message"}} with a Chinese message."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_HTTP_ERRORS = {
    400: ("invalid_json", "请求内容不是有效的 JSON（需要 UTF-8 编码）。"),  # Starlette: body not decodable
    404: ("http_404", "找不到这个地址。"),
    405: ("http_405", "不支持这种请求方式。"),
}


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    kinds = {e.get("type", "") for e in exc.errors()}
    if "json_invalid" in kinds:
        return "invalid_json", "请求内容不是有效的 JSON（需要 UTF-8 编码）。"
    fields = ", ".join(".".join(str(p) for p in e.get("loc", ()) if p != "body") for e in exc.errors())
    return "invalid_request", f"请求格式不正确：{fields}。"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(422, code, message)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code, message = _HTTP_ERRORS.get(exc.status_code, (f"http_{exc.status_code}", str(exc.detail)))
        return error_response(exc.status_code, code, message)
