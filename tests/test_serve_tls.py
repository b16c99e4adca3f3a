"""`ob-takeover serve` as an operator runs it on a network: HTTPS with --tls-cert/--tls-key, the config server
on a plain-HTTP listener of its own, and plain HTTP refused on an address that is not loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.mariadb import free_port
from tests.support.tls import make_tls_files

ROOT = Path(__file__).resolve().parents[1]


def serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OB_TAKEOVER_METADB": f"sqlite:///{tmp_path / 'metadb.sqlite'}",
        "OB_TAKEOVER_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "TEMPORAL_ADDRESS": "127.0.0.1:1",  # never reached: nothing here starts a task
    }
    log = (tmp_path / "serve.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-c", "from ob_takeover.cli import main; main()", "serve", *args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_plain_http_on_a_network_address_is_refused(tmp_path: Path) -> None:
    for listen in (["--listen", "10.0.0.1:8080"], ["--codec-listen", "10.0.0.1:8081"]):
        process = serve(tmp_path, *listen)
        process.wait(60)
        err = (tmp_path / "serve.log").read_text()
        assert process.returncode == 2, err
        assert "is not a loopback address and the service has no TLS" in err and "--tls-cert" in err
    assert not (tmp_path / "metadb.sqlite").exists()  # refused before anything was opened


def test_https_api_and_a_plain_http_config_server(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    api, codec, config = free_port(), free_port(), free_port()
    process = serve(
        tmp_path, "--listen", f"127.0.0.1:{api}", "--codec-listen", f"127.0.0.1:{codec}",
        "--config-listen", f"127.0.0.1:{config}", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = requests.get(f"https://127.0.0.1:{api}/api/v2/time", verify=str(tls.ca), timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        assert reply.status_code == 200 and reply.text.startswith("20")
        # Not ready while Temporal cannot be reached (a load balancer sends it nothing), alive all the same.
        ready = requests.get(f"https://127.0.0.1:{api}/readyz", verify=str(tls.ca), timeout=30)
        assert ready.status_code == 503 and ready.json()["problems"] == ["temporal: unreachable"], ready.text
        assert requests.get(f"https://127.0.0.1:{api}/healthz", verify=str(tls.ca), timeout=5).status_code == 200
        # The API speaks HTTPS only; the codec too.
        try:
            plain = requests.get(f"http://127.0.0.1:{api}/api/v2/time", timeout=5)
            assert plain.status_code >= 400
        except requests.ConnectionError:
            pass
        assert requests.get(f"https://127.0.0.1:{codec}/codec/decode", verify=str(tls.ca), timeout=5).status_code in (
            405,
            404,
        )
        # The config server answers on its own plain-HTTP listener, and only there.
        query = "/services?Action=ObRootServiceInfo&ObCluster=obcluster"
        answer = requests.get(f"http://127.0.0.1:{config}{query}", timeout=5)
        assert answer.status_code == 404 and answer.json()["Message"] == "cluster obcluster not found"
        elsewhere = requests.get(f"https://127.0.0.1:{api}{query}", verify=str(tls.ca), timeout=5)
        assert elsewhere.status_code == 404 and "Message" not in elsewhere.json()
    finally:
        process.terminate()
        process.wait(30)
