"""The server's time (anonymous) and its version."""

from __future__ import annotations

from importlib import metadata

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from ob_takeover.api.deps import API, ViewerCall
from ob_takeover.api.envelope import now_iso

# OCP's API level this implements; `/info` answers it, then this project's version, as buildVersion.
OCP_API_LEVEL = "4.3.4"

router = APIRouter()


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
