"""The answers every API operation can give besides its success, added to the generated OpenAPI schema (a
drf-spectacular postprocessing hook): errors are all one JSON shape, `{"message": ..., "extra": {...}}`
(api/errors.py), whichever view, parser, permission or throttle refused the request."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_SCHEMA", "add_error_responses"]

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "what went wrong, for a person to read"},
        "extra": {"type": "object", "additionalProperties": {}, "description": "details: fields, versions, limits"},
    },
    "required": ["message", "extra"],
}
EVERY_OPERATION = {
    "400": "invalid parameters or body; `extra` names the fields",
    "401": "not signed in, where HTTP basic auth is enabled (API_BASIC_AUTH); sessions only answer 403",
    "403": "not signed in, or your role may not do this",
    "404": "no such object",
    "429": "too many requests (throttled); retry later",
}
WITH_A_BODY = {"413": "the request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE"}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Documents the error answers on every operation, leaving any an operation describes itself."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            codes = EVERY_OPERATION | (WITH_A_BODY if method in ("post", "put", "patch") else {})
            for code, description in codes.items():
                operation["responses"].setdefault(code, {"description": description, "content": error})
    return result
