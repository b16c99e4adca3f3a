"""The API against its own OpenAPI document: schemathesis generates requests from the document (its examples,
its boundaries, random values, and sequences that follow its links) and checks every answer of the running
service. Any server error, or any status, content type, header or body the document does not declare, fails.

Left out, each for a reason:
- takeOver and takeOverPreCheck: a request the document accepts starts a task (a precheck waits for it);
  their bodies are checked field by field in test_bad_input_corpus.py and test_api.py.
- `ignored_auth`: after a few wrong passwords from one address, the login throttle answers 429, not 401
  (as the document declares; test_auth.py tests the throttle).
- `positive_data_acceptance`: a body can satisfy the document and still be refused for a rule that ties two
  fields together (an SSH password or key, by the credential's type), with a 400 naming the field.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from tests.support.service import served

EXCLUDED_CHECKS = "ignored_auth,positive_data_acceptance"


def test_every_answer_is_one_the_document_declares(tmp_path: Path, client: Client, task_queue: str) -> None:
    address = client.service_client.config.target_host
    with served(tmp_path, temporal_address=address, task_queue=task_queue) as service:
        token = base64.b64encode(":".join(service.auth("admin")).encode()).decode()
        process = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{service.base}/api/v2/openapi.json",
             "--header", f"Authorization: Basic {token}", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
             "--exclude-path-regex", "takeOver", "--max-examples", "25", "--seed", "20261204",
             "--request-timeout", "30", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        output = process.stdout + process.stderr
        assert process.returncode == 0, output[-6000:] + "\n" + service.log.read_text()[-2000:]
        tested = re.search(r"Tested: (\d+)", output)
        assert tested and int(tested.group(1)) >= 20, output[-3000:]  # every operation but the two left out
        # The run reached the service: its log has the generated calls, answered.
        assert service.log.read_text().count(" -> ") > 200
