"""HTTP-only failures (a bad request shape, auth, draining), with the engine's error contract.

Each is an :class:`~m2i_engine.errors.M2IError`, so the API renders them exactly like engine errors:
``{"error": {"code", "message"}, "request_id"}`` with the class's ``http_status``.
"""

from __future__ import annotations

from m2i_engine.errors import InputError, M2IError, ServiceError


class BadRequestError(InputError):
    code = "bad_request"
    default_message = "The request is malformed."
    http_status = 400


class UnsupportedMediaTypeError(InputError):
    code = "unsupported_media_type"
    default_message = (
        "Send the audio as multipart/form-data (field 'audio') or as the raw request body "
        "with an audio/* or application/octet-stream content type."
    )
    http_status = 415


class MissingAudioError(InputError):
    code = "missing_audio"
    default_message = "No audio in the request: add a file field named 'audio'."
    http_status = 400


class UploadTimeoutError(InputError):
    code = "upload_timeout"
    default_message = "The upload was too slow and was stopped — please try again on a better connection."
    http_status = 408


class UnauthorizedError(M2IError):
    code = "unauthorized"
    default_message = "A valid bearer token is required (Authorization: Bearer <token>)."
    http_status = 401
    exit_code = 2


class NotFoundError(InputError):
    code = "not_found"
    default_message = "Nothing here."
    http_status = 404


class MethodNotAllowedError(InputError):
    code = "method_not_allowed"
    default_message = "That method isn't allowed here."
    http_status = 405


class ShuttingDownError(ServiceError):
    code = "shutting_down"
    default_message = "This server is restarting — please try again in a moment."
    http_status = 503
