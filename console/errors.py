"""One table from the escalation and video services' refusal codes to HTTP statuses, for every console route."""

from __future__ import annotations

from bot.escalation import EscalationError
from bot.video import VideoError
from connectors.web.errors import ApiError

STATUS = {
    "unknown_escalation": 404,
    "unknown_call": 404,
    "no_recording": 404,
    "wrong_department": 403,
    "not_yours": 403,
    "not_your_call": 403,
    "already_taken": 409,
    "at_capacity": 409,
    "unsupported_type": 415,
    "chunk_too_large": 413,
    "recording_too_large": 413,
    "unknown_queue": 422,
}


def refusal(error: EscalationError | VideoError) -> ApiError:
    """The JSON error for a refused console action; codes not listed conflict with the call's state (409)."""
    return ApiError(STATUS.get(error.code, 409), error.code, error.message)
