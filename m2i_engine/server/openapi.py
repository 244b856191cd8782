"""The API's OpenAPI 3.1 description, built from the same option model the routes validate with."""

from __future__ import annotations

from typing import Any

from m2i_engine import __version__
from m2i_engine.options import VideoOptions, VisualizeOptions

#: a result's notes and their operator details, as an image result and a video describe them
_NOTES: dict[str, Any] = {
    "notes": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Sentences about how the result was made, fit to show to anyone (no setting "
        "names or paths).",
    },
    "note_details": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "For the operator: a note (the key) and what lies behind it, e.g. which setting "
        "turns Stable Diffusion on. Keep it from end users.",
    },
}


def _error(desc: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _video_params() -> list[dict[str, Any]]:
    """``video=true`` and one ``video_<name>`` per :class:`VideoOptions` field, from the model itself."""
    schema = VideoOptions.model_json_schema(ref_template="#/components/schemas/{model}")
    params: list[dict[str, Any]] = [
        {
            "name": "video",
            "in": "query",
            "schema": {"type": "boolean", "default": False},
            "description": "Also make a music video of the song (H.264 + AAC MP4: a clip with its sound, the "
            "picture moving with its beats and sections); the answer's video links to "
            "/v1/videos/{id}.mp4. The video_* fields below may also be form fields.",
        },
        {
            "name": "video_max_bytes",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1},
            "description": "Largest video file: a bigger one is encoded again at a lower bit rate, and one "
            "that can't fit is refused (413 video_too_large).",
        },
    ]
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        params.append(
            {
                "name": f"video_{name}",
                "in": "query",
                "schema": prop,
                "description": prop.pop("description", ""),
            }
        )
    return params


def build_openapi() -> dict[str, Any]:
    opt_schema = VisualizeOptions.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = opt_schema.pop("$defs", {})
    defs.update(VideoOptions.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}))
    form_props: dict[str, Any] = {
        "audio": {
            "type": "string",
            "format": "binary",
            "description": "The song or voice note (any common format).",
        },
        "options": {"type": "string", "description": "All options as one JSON object (optional)."},
    }
    form_props.update(opt_schema["properties"])
    errors = {
        "400": _error("Malformed request (missing audio, bad multipart, duplicate or over-long field)."),
        "401": _error("Missing or wrong bearer token."),
        "408": _error("The upload did not arrive in time."),
        "410": _error(
            "video_expired: the video was made but was gone before it was read (expired, or lost by the "
            "job queue); ask again with a new Idempotency-Key (or none)."
        ),
        "413": _error("The upload is larger than the limit, or the video can't fit video_max_bytes."),
        "415": _error("Wrong content type, or the file isn't audio."),
        "422": _error("Audio that can't be used (corrupt, too long/short, silent) or an invalid option."),
        "429": _error("Busy: try again later."),
        "500": _error("A bug; the request id is in the answer and the logs."),
        "503": _error("Service unavailable (draining, queue unreachable, backend missing)."),
        "504": _error("The request took too long."),
    }
    body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["audio"], "properties": form_props}
            },
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    common_params = [
        {
            "name": "wait",
            "in": "query",
            "schema": {"type": "boolean", "default": True},
            "description": "false: answer 202 with a job id at once (also: header Prefer: respond-async).",
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "schema": {"type": "string", "maxLength": 128},
            "description": "Retries with the same key (and the same audio and options) get the same job.",
        },
        {
            "name": "X-Request-ID",
            "in": "header",
            "schema": {"type": "string", "maxLength": 64},
            "description": "Echoed back and written on every log line of the request.",
        },
    ]
    job_ok = {
        "description": "Accepted: poll the job.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobStatus"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "m2i — music to image",
            "version": __version__,
            "description": "Tag a song (genre, emotion, tempo, key…) and draw an image from it.",
        },
        "paths": {
            "/v1/visualize": {
                "post": {
                    "summary": "Tags, prompt and image(s) for a song.",
                    "parameters": [
                        *common_params,
                        {
                            "name": "image",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["url", "base64"], "default": "url"},
                            "description": "Images as links to /v1/images (default) or inline base64; send "
                            "Accept: image/png for the first image's bytes only.",
                        },
                        *_video_params(),
                    ],
                    "requestBody": body,
                    "responses": {
                        "200": {
                            "description": "Done.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/VisualizeResult"}
                                },
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "202": job_ok,
                        **errors,
                    },
                }
            },
            "/v1/analyze": {
                "post": {
                    "summary": "Tags only.",
                    "parameters": common_params,
                    "requestBody": body,
                    "responses": {
                        "200": {
                            "description": "Done.",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/AnalyzeResult"}}
                            },
                        },
                        "202": job_ok,
                        **errors,
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "summary": "Stage and, when done, the result of an asynchronous request.",
                    "parameters": [
                        {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "Status (and result or error).",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/JobStatus"}}
                            },
                        },
                        "404": _error("Unknown or expired job."),
                    },
                }
            },
            "/v1/images/{image_id}.png": {
                "get": {
                    "summary": "An image made by a visualize request.",
                    "parameters": [
                        {
                            "name": "image_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "PNG", "content": {"image/png": {}}},
                        "404": _error("Unknown or expired image."),
                    },
                }
            },
            "/v1/videos/{video_id}.mp4": {
                "get": {
                    "summary": "A video made by a visualize request with video=true (kept like images; "
                    "Range requests are answered with 206 for players that seek).",
                    "parameters": [
                        {
                            "name": "video_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        },
                        {
                            "name": "Range",
                            "in": "header",
                            "schema": {"type": "string"},
                            "description": "e.g. bytes=0-1023",
                        },
                    ],
                    "responses": {
                        "200": {"description": "MP4 (H.264 + AAC)", "content": {"video/mp4": {}}},
                        "206": {"description": "The requested byte range", "content": {"video/mp4": {}}},
                        "404": _error("Unknown or expired video."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers.",
                    "security": [],
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: models loaded (or queue and a worker reachable), not draining.",
                    "security": [],
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "security": [],
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when M2I_SERVE__TOKENS is set.",
                }
            },
            "schemas": {
                **defs,
                "VisualizeOptions": opt_schema,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                        "request_id": {"type": "string"},
                    },
                },
                "Image": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "url": {"type": "string"},
                        "seed": {"type": "integer"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                        "png_base64": {"type": "string"},
                    },
                },
                "VisualizeResult": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string"},
                        "job_id": {"type": "string"},
                        "tags": {"type": "object"},
                        "prompt": {"type": "string"},
                        "negative_prompt": {"type": "string"},
                        "style": {"type": "string"},
                        "backend": {"type": "string"},
                        "seed": {"type": "integer"},
                        "images": {"type": "array", "items": {"$ref": "#/components/schemas/Image"}},
                        "video": {"$ref": "#/components/schemas/Video"},
                        **_NOTES,
                        "cached": {"type": "boolean"},
                        "timings_ms": {"type": "object"},
                    },
                },
                "Video": {
                    "type": "object",
                    "description": "Only with video=true.",
                    "properties": {
                        "id": {"type": "string"},
                        "url": {"type": "string"},
                        "content_type": {"type": "string", "const": "video/mp4"},
                        "bytes": {"type": "integer"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                        "fps": {"type": "number"},
                        "length_s": {"type": "number"},
                        "start_s": {"type": "number", "description": "Where the clip starts in the song."},
                        "codec": {"type": "string"},
                        "audio_codec": {"type": ["string", "null"]},
                        "bit_rate": {
                            "type": ["integer", "null"],
                            "description": "The video bit rate a byte limit forced; null: constant quality.",
                        },
                        "frames": {"type": "integer"},
                        "backend": {"type": "string"},
                        "style": {
                            "type": "string",
                            "description": "The look it was drawn in (auto resolved).",
                        },
                        "motif": {"type": "string", "description": "The renderer's motif for the song."},
                        "seed": {"type": "integer"},
                        "scenes": {"type": "integer"},
                        "sections": {"type": "array", "items": {"type": "object"}},
                        **_NOTES,
                        "timings_ms": {"type": "object"},
                    },
                },
                "AnalyzeResult": {
                    "type": "object",
                    "properties": {
                        "request_id": {"type": "string"},
                        "job_id": {"type": "string"},
                        "tags": {"type": "object"},
                        "audio_sha256": {"type": "string"},
                        "cached": {"type": "boolean"},
                        "timings_ms": {"type": "object"},
                    },
                },
                "JobStatus": {
                    "type": "object",
                    "properties": {
                        "job_id": {"type": "string"},
                        "kind": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [
                                "queued",
                                "decoding",
                                "analysing",
                                "drawing",
                                "finishing",
                                "done",
                                "failed",
                            ],
                        },
                        "queue_position": {"type": ["integer", "null"]},
                        "status_url": {"type": "string"},
                        "result": {"type": "object"},
                        "error": {"type": "object"},
                    },
                },
            },
        },
    }
