"""What the static models cannot say in the OpenAPI schema: the job types registered when the
app starts (entry points, TIDEGATE_JOB_MODULES), and the bodies of the routes that parse their
own JSON (the OpenAI-compatible front door, which answers in OpenAI's error shape)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

# (component, property) and (path, query parameter) that name a job type.
_TYPE_FIELDS = (("JobCreate", "type"), ("ScheduleCreate", "type"))
_TYPE_PARAMS = (("/v1/jobs", "type"), ("/v1/events", "type"))


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` from a required JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def install(app: FastAPI, *, job_types: list[str], bodies: list[type[BaseModel]]) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in bodies:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        for name, prop in _TYPE_FIELDS:
            if name in components:
                components[name]["properties"][prop]["enum"] = job_types
        for path, param in _TYPE_PARAMS:
            for p in schema["paths"].get(path, {}).get("get", {}).get("parameters", []):
                if p["name"] == param and p["in"] == "query":
                    p["schema"] = {"anyOf": [{"type": "string", "enum": job_types},
                                             {"type": "null"}], "title": "Type"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
