"""post-metrics-diff: the job summary on GitHub, a merge request note on GitLab (against a local
HTTP server on a free port standing in for GitLab's API), and every refusal."""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

SCRIPT = Path("infra/ci/post-metrics-diff").resolve()
MARKDOWN = "## Model metrics: base → head\n\n| model | metric |\n"


def post(tmp_path: Path, where: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    diff = tmp_path / "metrics-diff.md"
    diff.write_text(MARKDOWN)
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITHUB_", "METRICS_"))
    }
    return subprocess.run(
        [str(SCRIPT), where, str(diff)], env={**clean, **env}, capture_output=True, text=True
    )


def test_github_appends_to_the_job_summary(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = post(tmp_path, "github", {"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    assert summary.read_text() == "earlier step\n" + MARKDOWN


def test_github_outside_actions_is_refused(tmp_path):
    result = post(tmp_path, "github", {})
    assert result.returncode == 2 and "GITHUB_STEP_SUMMARY is not set" in result.stderr


def test_gitlab_without_a_token_does_not_post(tmp_path):
    result = post(tmp_path, "gitlab", {"CI_API_V4_URL": "http://127.0.0.1:9/api/v4"})
    assert result.returncode == 0 and "METRICS_DIFF_TOKEN is not set; not posting" in result.stdout


def test_gitlab_outside_a_merge_request_is_refused(tmp_path):
    result = post(tmp_path, "gitlab", {"METRICS_DIFF_TOKEN": "t0ken", "CI_PROJECT_ID": "7"})
    assert result.returncode == 2 and "CI_API_V4_URL is not set" in result.stderr
    assert "t0ken" not in result.stderr + result.stdout


def test_a_missing_file_and_a_bad_target_are_refused(tmp_path):
    missing = subprocess.run(
        [str(SCRIPT), "gitlab", str(tmp_path / "none.md")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is missing or empty" in missing.stderr
    bad = subprocess.run([str(SCRIPT), "bitbucket", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.fixture
def fake_gitlab():
    received: list[tuple[str, dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(201)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", received
    server.shutdown()
    server.server_close()


def test_gitlab_posts_a_note_with_the_token_in_a_header(tmp_path, fake_gitlab):
    url, received = fake_gitlab
    env = {
        "METRICS_DIFF_TOKEN": "t0ken",
        "CI_API_V4_URL": url,
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "42",
    }
    result = post(tmp_path, "gitlab", env)
    assert result.returncode == 0, result.stderr
    [(path, headers, body)] = received
    assert path == "/api/v4/projects/7/merge_requests/42/notes"
    assert headers["PRIVATE-TOKEN"] == "t0ken"
    assert parse_qs(body.decode())["body"] == [MARKDOWN]
