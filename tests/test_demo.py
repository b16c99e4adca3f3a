"""The README's quick start, as a newcomer runs it and looks at it (`scripts/demo.sh` without its install step:
`python -m ob_takeover.demo`): the demo takes the simulated cluster over end to end, and while it runs, what it
prints opens in a real browser. The API page renders the takeover operation from this service alone; the
Temporal UI shows the takeover's input decoded through the codec, no password in it, and the subtasks'
summaries; the Grafana dashboard's metrics are all in real scrapes of the service and the worker. Ctrl-C's
SIGTERM stops it all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from ob_takeover.demo import ROOT_PASSWORD
from tests.support.browser import browser, chromium_available

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = "takeover-127.0.10.2-2881"
DASHBOARD = ROOT / "deploy/grafana/dashboards/ob-takeover.json"
# The verification's gauges appear with the first verification (its schedule's first run is an interval away).
AFTER_AN_EVENT = {
    "ob_takeover_errors_total",
    "ob_takeover_operations_total",
    "ob_takeover_drift",
    "ob_takeover_verification_timestamp_seconds",
}


class Output:
    """What a process prints, read line by line by a thread of its own as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def until(self, marker: str, timeout: float) -> str:
        """Everything printed so far, once a line has `marker` (or the output ended, or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._reader.is_alive() and not any(marker in x for x in self.lines):
            time.sleep(0.2)
        return "".join(self.lines)

    def rest(self) -> str:
        self._reader.join(60)
        return "".join(self.lines)


def dashboard_metrics() -> set[str]:
    """The metric names the dashboard's panels query."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    expressions = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    return set(re.findall(r"\b(?:ob_takeover|temporal)_[a-z_]+", expressions))


def scraped(url: str) -> set[str]:
    reply = requests.get(url, timeout=10)
    assert reply.status_code == 200, (url, reply.text[:300])
    names = {line.split("{")[0].split(" ")[0] for line in reply.text.splitlines() if line and not line.startswith("#")}
    # A labelled family with no sample yet (no error so far) is declared by its TYPE line: a query finds it empty.
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", reply.text, re.MULTILINE):
        names |= {family, family + "_total"} if kind == "counter" else {family}
    return names


@pytest.mark.skipif(not chromium_available(), reason="Debian's chromium is installed by scripts/test.sh")
@pytest.mark.timeout(420)
def test_the_demo_takes_its_cluster_over_and_what_it_prints_opens() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OB_TAKEOVER_", "TEMPORAL_"))}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "ob_takeover.demo"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    printed = Output(process)
    try:
        output = printed.until("Everything keeps running", timeout=300)
        assert "'Take over primary OB cluster' cluster 1: SUCCESSFUL" in output, output[-3000:]
        password = (ROOT / "var/demo/api-password").read_text().strip()
        look_at_what_the_demo_printed(output, password)
        metrics = scraped("http://127.0.0.1:8080/metrics") | scraped("http://127.0.0.1:9464/metrics")
        missing = {m for m in dashboard_metrics() if not {m, m + "_bucket", m + "_total"} & metrics}
        # Counted from the first failure and the first operator operation on: a takeover that succeeds at once
        # has neither (test_observability.py scrapes both after a failure and a retry).
        assert missing == AFTER_AN_EVENT, f"the dashboard queries metrics no scrape has: {sorted(missing)}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        rest = printed.rest()
    assert process.returncode == 0, rest[-2000:]
    assert "stopped temporal" in rest, rest[-2000:]


def look_at_what_the_demo_printed(output: str, password: str) -> None:
    # Every address it prints, but the codec's (an endpoint for the UI and the CLI, not a page).
    links = {link for link in re.findall(r"http://127\.0\.0\.1:\d+[^\s)`'\"]*", output) if "/codec" not in link}
    assert {"http://127.0.0.1:8233", "http://127.0.0.1:8080/api/v2/docs"} <= links, links
    credentials = {"username": "demo", "password": password}
    with browser(http_credentials=credentials, viewport={"width": 1400, "height": 3000}) as browsing:
        page = browsing.context.new_page()
        for link in sorted(links):
            answer = page.goto(link)
            assert answer is not None and answer.ok, (link, answer and answer.status)
        # The API page: Swagger UI from this service's own files, listing the takeover.
        page.goto("http://127.0.0.1:8080/api/v2/docs")
        page.get_by_text("/api/v2/ob/clusters/takeOver", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text("take a cluster over").count() >= 1
        # The takeover in the Temporal UI: its input decoded by the codec, with no password in it.
        page.goto(f"http://127.0.0.1:8233/namespaces/default/workflows/{WORKFLOW}")
        page.get_by_text("rootSysCredentialId").first.wait_for(timeout=30_000)
        # Its timeline: every subtask labelled with its name and node (the activities' summaries).
        deadline = time.monotonic() + 30
        while "Sync cluster info · obcluster" not in (text := page.inner_text("body")) and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        assert '"hostTypeId": 1' in text and "COMPLETED" in text, text[:2000]
        assert "Mc unlock ob clusters · obcluster" in text, text[-3000:]
        assert ROOT_PASSWORD not in text and ROOT_PASSWORD not in page.content()
    assert not browsing.elsewhere, f"pages reached for other hosts: {browsing.elsewhere}"
