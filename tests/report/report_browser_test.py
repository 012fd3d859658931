"""A model's report.html, as a reviewer sees it: rendered by headless Debian chromium, served over
HTTP on a free port, every figure requested, decoded and painted."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

REPORT_DIR = Path("models/breast_cancer_mlp_torch")  # from `pants package`, in the sandbox
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
)
# A page beside the report that loads it in a frame and, once everything has loaded, writes the
# state of each of the report's images into its own DOM (same origin: both are served by us).
PROBE = """<!DOCTYPE html>
<html><body><pre id="result">pending</pre>
<iframe id="report" src="report.html" width="1000" height="800"></iframe>
<script>
window.addEventListener("load", () => {
  const doc = document.getElementById("report").contentDocument;
  const images = [...doc.images].map(i => ({
    src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight
  }));
  document.getElementById("result").textContent = JSON.stringify({title: doc.title, images});
});
</script></body></html>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None
    )


@pytest.fixture(scope="module")
def browser() -> str:
    found = chromium()
    if found is None:
        if os.environ.get("CHROMIUM_REQUIRED"):
            pytest.fail("CHROMIUM_REQUIRED is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The packaged report directory over HTTP on a free port; yields (base URL, requested)."""
    root = tmp_path_factory.mktemp("site")
    for path in REPORT_DIR.iterdir():
        shutil.copy(path, root / path.name)
    (root / "probe.html").write_text(PROBE)
    requested: list[tuple[str, int]] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            requested.append((self.path, int(code)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested, root
    finally:
        server.shutdown()
        server.server_close()


def run_chromium(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def figures(root: Path) -> set[str]:
    html = (root / "report.html").read_text()
    return set(re.findall(r'<img src="([^"]+)"', html))


def test_every_figure_is_requested_and_decoded(browser, served, tmp_path):
    base, requested, root = served
    expected = figures(root)
    assert len(expected) == 4 and expected == {p.name for p in root.glob("*.svg")}
    result = run_chromium(browser, tmp_path, "--dump-dom", f"{base}/probe.html")
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r'<pre id="result">(.*?)</pre>', result.stdout, re.S)
    assert match and match.group(1) != "pending", result.stdout[-3000:]
    state = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert state["title"] == "Model report: breast_cancer_mlp_torch"
    assert {i["src"] for i in state["images"]} == expected
    for image in state["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    served_ok = {path.lstrip("/") for path, code in requested if code == 200}
    assert expected <= served_ok, requested


def test_the_screenshot_shows_the_report(browser, served, tmp_path):
    base, _, _ = served
    shot = tmp_path / "report.png"
    result = run_chromium(
        browser, tmp_path, f"--screenshot={shot}", "--window-size=1000,2400", f"{base}/report.html"
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-3000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1000)
    # Not blank: a good share of non-white pixels (text, tables, plots) and many distinct colours
    # (the figures' lines, bars and colour map, not just black text on white).
    non_white = (pixels < 0.95).any(axis=2).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.05, non_white
    assert colours > 200, colours
