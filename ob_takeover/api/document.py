"""The API's OpenAPI document, as the service answers: OCP's envelopes, HTTP Basic, and every error status a
route can answer (FastAPI's own 422 never: bad parameters and bodies are OCP's 400)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from metadb.users import TASK_VIEWER
from ob_takeover.api.deps import Authenticated
from ob_takeover.api.envelope import ErrorEnvelope

COMPONENTS = "#/components/schemas/"
ERROR = {"$ref": f"{COMPONENTS}ErrorEnvelope"}

# What each error status means on this API, for the document.
ERROR_MEANINGS = {
    400: "a parameter or a body field breaks a rule (one sub-error per field), or the operation is refused",
    401: "no credentials, or wrong ones (HTTP Basic)",
    403: "the user's role does not allow this",
    404: "nothing has this id",
    409: "the cluster or the name is taken: another task holds the cluster, it is managed already, or it exists",
    429: "too many failed logins from this address or for this name; `Retry-After` says when to try again",
    503: "Temporal or the metadb cannot be reached now; try again",
}


def api_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes, built once."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=metadata.version("ob-takeover"), summary=app.summary,
                               routes=app.routes)  # fmt: skip
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        _add_schema(schemas, ErrorEnvelope.model_json_schema(ref_template=COMPONENTS + "{model}"), "ErrorEnvelope")
        document["components"]["securitySchemes"] = {"basicAuth": {"type": "http", "scheme": "basic"}}
        for route in api_routes(app.routes):
            if route.include_in_schema and route.path_format in document["paths"]:
                for method in route.methods or ():
                    _declare(document["paths"][route.path_format][method.lower()], route, schemas)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = document
    return app.openapi_schema


def _declare(operation: dict[str, Any], route: APIRoute, schemas: dict[str, Any]) -> None:
    """Security, the error answers and the body's models of one operation."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "schema" in body:
        body["schema"] = _add_schema(schemas, body["schema"])
    role = _role(route.dependant)
    statuses = set()
    if route.dependant.path_params:
        statuses.add(404)
    if route.dependant.path_params or route.dependant.query_params or body:
        statuses.add(400)
    if role is not None:
        operation["security"] = [{"basicAuth": []}]
        operation["description"] = f"{operation.get('description', '')}\n\nNeeds the role {role} or above.".strip()
        statuses |= {401, 429, 503}
        if role != TASK_VIEWER:
            statuses.add(403)
    else:
        operation["security"] = []
    statuses |= {int(status) for status in responses if status.startswith(("4", "5"))}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": ERROR}},
        }


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, those of included routers too (their routes carry the paths in full here)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router
        if included is not None:
            yield from api_routes(included.routes)


def _role(dependant: Dependant) -> str | None:
    """The role a route's authenticated call needs; None for an anonymous route."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Authenticated):
            return dependency.call.role
        found = _role(dependency)
        if found is not None:
            return found
    return None


def _add_schema(schemas: dict[str, Any], schema: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """`schema` with the models it defines moved into the document's components; a reference to it when
    `name` is given."""
    for defined, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(defined, definition)
    if name is None:
        return schema
    schemas[name] = schema
    return {"$ref": COMPONENTS + name}
