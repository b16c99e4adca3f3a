"""The server's time (anonymous) and its version."""

from __future__ import annotations

import asyncio
import functools
import subprocess
from importlib import metadata
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from ob_takeover.api.deps import API, ViewerCall
from ob_takeover.api.envelope import now_iso

# OCP's API level this implements; `/info` answers it, then this project's version, as buildVersion.
OCP_API_LEVEL = "4.3.4"

# Swagger UI's own files, served from the package (fastapi-offline's copy): the page reaches no other host.
DOCS_ASSETS = f"{API}/docs/assets"

router = APIRouter()


@router.get(f"{API}/openapi.json", include_in_schema=False)
async def api_document(request: Request, call: ViewerCall) -> JSONResponse:
    """The OpenAPI document, for a viewer."""
    return JSONResponse(request.app.openapi())


@router.get(f"{API}/docs", include_in_schema=False)
async def api_page(call: ViewerCall) -> HTMLResponse:
    """Swagger UI on the document, for a viewer; its scripts, style and icon from this service."""
    return get_swagger_ui_html(
        openapi_url=f"{API}/openapi.json",
        title="ob-takeover: OCP's takeover API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )


@router.get(f"{API}/time", response_class=PlainTextResponse, summary="server time (anonymous)")
async def server_time() -> PlainTextResponse:
    return PlainTextResponse(now_iso())


class Info(BaseModel):
    name: str
    group: str
    artifact: str
    build_time: str = Field(alias="buildTime")
    build_version: str = Field(alias="buildVersion")
    build_java_version: str = Field(alias="buildJavaVersion")
    spring_boot_version: str = Field(alias="springBootVersion")


@router.get(f"{API}/info", summary="version (the bare object, as OCP answers it)", response_model=Info)
async def info(call: ViewerCall) -> dict[str, str]:
    version = metadata.version("ob-takeover")
    return {
        "artifact": "ob-takeover",
        "buildJavaVersion": "-",
        "buildTime": "-",
        "buildVersion": f"{OCP_API_LEVEL}_{version}",
        "group": "ob-takeover",
        "name": "ob-takeover",
        "springBootVersion": "-",
    }


class GitInfo(BaseModel):
    commit_id: str = Field(alias="commitId")
    commit_branch: str = Field(alias="commitBranch")
    commit_time: str = Field(alias="commitTime")


@functools.cache
def git_info() -> dict[str, str]:
    """The commit this service runs from (its checkout's, read once); the package version when it runs from
    an installed package without its repository."""
    root = Path(__file__).resolve().parents[3]
    fields = {"commitId": "%h", "commitBranch": "%D", "commitTime": "%cI"}
    try:
        found = {
            key: subprocess.run(
                ["git", "-C", str(root), "log", "-1", f"--format={pattern}"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            for key, pattern in fields.items()
        }  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        found = {}
    if not found.get("commitId"):
        return {"commitId": metadata.version("ob-takeover"), "commitBranch": "", "commitTime": ""}
    branch = found["commitBranch"].split(",")[0].removeprefix("HEAD -> ").strip()
    return {**found, "commitBranch": branch}


@router.get(
    f"{API}/git-info", summary="the commit this service runs (the bare object, as OCP answers it)",
    response_model=GitInfo,
)  # fmt: skip
async def git_info_route(call: ViewerCall) -> dict[str, str]:
    return await asyncio.to_thread(git_info)
