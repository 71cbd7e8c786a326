"""Errors shared across shoal's parts."""
from __future__ import annotations


class ShoalError(Exception):
    """Base of shoal's own errors."""


class ConfigError(ShoalError):
    """Settings that cannot work together (caught at startup, never at request time)."""


class ModelNotFoundError(ShoalError):
    """A model id that resolves to nothing on this machine."""


class ApiError(ShoalError):
    """An error answered over HTTP as `{"error": message, "error_type": kind}`."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


def validation_error(message: str) -> ApiError:
    return ApiError(422, message, "validation")


def overloaded_error() -> ApiError:
    return ApiError(429, "Model is overloaded", "overloaded")


def generation_error(message: str) -> ApiError:
    return ApiError(424, message, "generation")
