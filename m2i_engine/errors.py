"""Typed, user-facing errors: every front end renders a failure from its stable ``code`` and ``message``.

A chat user never sees a traceback. Each error carries a ``code`` that tests, logs, HTTP responses
and bots can rely on, and a one-sentence ``message`` written for the person who sent the file.
"""

from __future__ import annotations

from typing import ClassVar


class M2IError(Exception):
    """Base of every error m2i reports to a user.

    Subclasses set ``code`` (stable, snake_case) and a default ``message``; ``detail`` is for logs
    only and is never shown to users.
    """

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Something went wrong on our side; please try again later."
    #: process exit status used by the CLI (distinct per family so scripts can branch on it)
    exit_code: ClassVar[int] = 1
    #: HTTP status used by the API front end
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# --- input: the file the user sent -----------------------------------------------------------


class InputError(M2IError):
    """The user's file or options cannot be used; retrying the same input will not help."""

    code = "bad_input"
    default_message = "That input can't be used."
    exit_code = 2
    http_status = 400


class EmptyAudioError(InputError):
    code = "empty_file"
    default_message = "The file is empty — please send the audio again."


class NotAudioError(InputError):
    code = "not_audio"
    default_message = (
        "That file doesn't look like audio — send a song or voice note "
        "(mp3, wav, flac, ogg, opus, m4a, webm or aiff)."
    )
    http_status = 415


class CorruptAudioError(InputError):
    code = "corrupt_audio"
    default_message = "The audio file is damaged or cut off, so it can't be played — try exporting it again."
    http_status = 422


class UnsupportedAudioError(InputError):
    code = "unsupported_audio"
    default_message = "This audio format has values outside what m2i can read (sample rate or channels)."
    http_status = 422


class TooLargeError(InputError):
    code = "too_large"
    default_message = "The file is too big."
    http_status = 413


class TooLongError(InputError):
    code = "too_long"
    default_message = "The audio is too long."
    http_status = 422


class TooShortError(InputError):
    code = "too_short"
    default_message = "The audio is too short to hear any music in it."
    http_status = 422


class SilentAudioError(InputError):
    code = "silent_audio"
    default_message = "The audio is silent — there's nothing to listen to."
    http_status = 422


class InvalidOptionError(InputError):
    code = "invalid_option"
    default_message = "One of the options isn't valid."
    http_status = 422


class VideoTooLargeError(InputError):
    """The clip can't be made to fit the byte limit at a bit rate that still shows a picture."""

    code = "video_too_large"
    default_message = "That video would be too big to send; ask for a shorter clip or a smaller size."
    http_status = 413


# --- service: the engine cannot serve right now ----------------------------------------------


class ServiceError(M2IError):
    """The request was fine but the service can't complete it now; retrying later may work."""

    code = "service_error"
    exit_code = 3
    http_status = 503


class BusyError(ServiceError):
    code = "busy"
    default_message = "m2i is busy right now — please try again in a minute."
    http_status = 429


class RequestTimeoutError(ServiceError):
    code = "timeout"
    default_message = "That took too long and was stopped — try a shorter clip."
    http_status = 504


class BackendUnavailableError(ServiceError):
    code = "backend_unavailable"
    default_message = "The image generator is not available right now."


class ModelLoadError(ServiceError):
    code = "model_load_failed"
    default_message = "A model could not be loaded."


class VideoUnavailableError(ServiceError):
    """The engine behind a front end makes no videos (one without a ``video`` method)."""

    code = "video_unavailable"
    default_message = "Videos aren't available on this server."


class VideoExpiredError(ServiceError):
    """A finished video was gone (expired, or lost with a Redis restart) before it could be read: the
    same request would only find the same dead result, so it has to be made again."""

    code = "video_expired"
    default_message = "That video expired before it could be sent — please ask for it again."
    http_status = 410


def describe(exc: BaseException) -> M2IError:
    """Map any exception to an ``M2IError`` so front ends never show a raw traceback."""
    if isinstance(exc, M2IError):
        return exc
    return M2IError(detail=f"{type(exc).__name__}: {exc}")
