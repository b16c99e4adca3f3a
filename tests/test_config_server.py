"""The config server over real HTTP, answering from the metadb."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from metadb import clusters
from metadb.db import Database
from ob_takeover.service import create_app, serve
from tests.support.mariadb import free_port


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


async def test_root_service_info_from_the_metadb(metadb: Database) -> None:
    cluster_id = clusters.create_cluster_record(
        metadb, name="obcluster", ob_cluster_id=7, address="127.0.0.2", port=2881,
        connection_mode="direct", version="4.2.1.8", task_id=1,
    )  # fmt: skip
    rs_list = [
        {"address": "127.0.0.2:2882", "role": "LEADER", "sql_port": 2881},
        {"address": "127.0.0.3:2882", "role": "FOLLOWER", "sql_port": 2881},
    ]
    clusters.set_rs_list(metadb, cluster_id, rs_list)
    port = free_port()
    runner = await serve(create_app(metadb), "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}/services?Action=ObRootServiceInfo"
    try:
        import asyncio

        status, body = await asyncio.to_thread(get, f"{base}&ObCluster=obcluster&ObClusterId=7")
        assert status == 200 and body["Success"] is True
        assert body["Data"]["ObCluster"] == "obcluster" and body["Data"]["ObClusterId"] == 7
        assert body["Data"]["RsList"] == rs_list and body["Data"]["Type"] == "PRIMARY"
        status, body = await asyncio.to_thread(get, f"{base}&ObCluster=obcluster&version=2")
        assert status == 200 and [c["ObCluster"] for c in body["Data"]] == ["obcluster"]
        # An anonymous caller names the cluster it serves: the list of every cluster is nobody's business.
        status, body = await asyncio.to_thread(get, f"{base}&version=2")
        assert status == 400 and body["Message"] == "ObCluster is required"
        status, body = await asyncio.to_thread(get, f"{base}&ObCluster=other")
        assert status == 404 and body["Message"] == "cluster other not found"
        status, body = await asyncio.to_thread(get, f"{base}&ObCluster=obcluster&ObClusterId=8")
        assert status == 404
        # Rolled back: the list is gone and so is the answer.
        clusters.set_rs_list(metadb, cluster_id, None)
        status, _ = await asyncio.to_thread(get, f"{base}&ObCluster=obcluster")
        assert status == 404
    finally:
        await runner.cleanup()
