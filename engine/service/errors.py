"""The API's one error shape: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the service refuses; 4xx for the caller's mistakes. (Not a frozen dataclass:
    the server sets `__traceback__` on exceptions it handles.)"""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "invalid", message, field)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)
