"""The OpenAPI 3.1 description of the JSON face, served at ``GET /openapi.json``.

Built from the task's own JSON Schema (``farm.domain.schema.task_json_schema``), so the document
and the validator cannot disagree on a field. It describes the seed platform's shapes: ``POST /v1``
takes an array of task objects (``videoInference``, ``getResponse``) and answers ``{"data": [...]}``
and/or ``{"errors": [...]}``; results download from ``GET /v1/videos/{videoUUID}``.
"""

from __future__ import annotations

import functools
from typing import Any

from farm.domain.errors import error_table
from farm.domain.schema import task_json_schema

_REF = "#/components/schemas/{model}"


def _error_item() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "code": {"type": "string", "enum": sorted({row.code for row in error_table().values()})},
            "message": {"type": "string"},
            "parameter": {"type": "string", "description": "The field path the error is about."},
            "taskUUID": {"type": "string"},
            "taskType": {"type": "string"},
            "retryable": {"type": "boolean"},
        },
        "required": ["code", "message"],
    }


def _result_item() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "taskType": {"type": "string"},
            "taskUUID": {"type": "string"},
            "status": {"type": "string", "enum": ["processing", "success", "error"]},
            "videoUUID": {"type": "string"},
            "videoURL": {"type": "string"},
            "seed": {"type": "integer"},
            "cost": {"type": "number"},
            "progress": {"type": "number"},
            "extendedPrompt": {"type": "string"},
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI document (cached: it is the same for the process's life)."""
    task = task_json_schema(ref_template=_REF)
    schemas = dict(task.pop("$defs", {}))
    task.pop("$schema", None)
    schemas["VideoInferenceTask"] = task
    schemas["GetResponseTask"] = {
        "type": "object",
        "properties": {"taskType": {"const": "getResponse"}, "taskUUID": {"type": "string"}},
        "required": ["taskType", "taskUUID"],
    }
    schemas["Error"] = _error_item()
    schemas["Result"] = _result_item()
    schemas["Answer"] = {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
        },
    }
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}
    plain = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skyreels-farm JSON API",
            "version": "1",
            "description": "The seed platform's task API: submit videoInference tasks, poll getResponse.",
        },
        "paths": {
            "/v1": {
                "post": {
                    "operationId": "tasks",
                    "summary": "Submit tasks and/or ask for results (the seed's array of task objects).",
                    "security": [{"bearer": []}, {}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/VideoInferenceTask"},
                                            {"$ref": "#/components/schemas/GetResponseTask"},
                                        ]
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "Every item answered", "content": answer},
                        "400": {"description": "Invalid request or task", "content": answer},
                        "401": {"description": "Missing or unknown API key", "content": answer},
                        "413": {"description": "Request too large", "content": answer},
                        "429": {"description": "Queue full (see Retry-After)", "content": answer},
                        "503": {"description": "Shutting down", "content": answer},
                    },
                }
            },
            "/v1/videos/{videoUUID}": {
                "get": {
                    "operationId": "video",
                    "summary": "A result's file (HTTP Range supported); the URL is a bearer capability.",
                    "parameters": [{"name": "videoUUID", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "The file",
                            "content": {"video/mp4": {}, "video/webm": {}, "video/quicktime": {}},
                        },
                        "206": {"description": "A byte range of the file"},
                        "404": {"description": "Unknown videoUUID", "content": answer},
                        "410": {"description": "Expired (past the task's ttl)", "content": answer},
                        "416": {"description": "Range not satisfiable"},
                    },
                }
            },
            "/healthz": {"get": {"operationId": "healthz", "responses": plain}},
            "/livez": {"get": {"operationId": "livez", "responses": plain}},
            "/readyz": {"get": {"operationId": "readyz", "responses": {**plain, "503": {"description": "Not ready"}}}},
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Prometheus text exposition", "content": {"text/plain": {}}}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
