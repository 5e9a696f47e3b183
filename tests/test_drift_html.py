"""drift.html in a real headless Chromium: no console message, the verdict on the first screen."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops.drift import demo

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)
WINDOW = (1280, 800)
# Appended to a copy of the report: after load, the verdict's box and text go into the title.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const v = document.getElementById("verdict");
  const box = v.getBoundingClientRect(), style = getComputedStyle(v);
  document.title = "PROBE" + JSON.stringify({top: box.top, height: box.height,
    visibility: style.visibility, display: style.display, text: v.innerText,
    first: document.body.firstElementChild === v
      || document.body.firstElementChild.nextElementSibling === v});
}, 500));
</script>"""


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """(the DOM after scripts ran, the console messages) of a file in headless Chromium."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def probe(dom: str) -> dict:
    found = re.search(r"<title>PROBE(.*?)</title>", dom, re.S)
    assert found, "the probe script did not run"
    return json.loads(html.unescape(found.group(1)))


def test_the_probe_sees_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><section id="verdict">x</section>'
        '<script>console.error("probe"); undefined_function();</script>' + PROBE + "</body></html>"
    )
    dom, console = render(page, tmp_path / "profile")
    assert len(console) == 2, console
    assert probe(dom)["first"] is True


def test_drift_report_renders_with_the_verdict_first(project, config, tmp_path):
    result = demo.demo_command(config)
    assert result["status"] == "alert"
    page = tmp_path / "drift_demo.html"
    text = Path("reports/drift_demo.html").read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom, console = render(page, tmp_path / "profile")
    assert console == []
    seen = probe(dom)
    assert seen["first"] is True
    assert seen["visibility"] == "visible"
    assert seen["display"] != "none"
    assert 0 <= seen["top"] < WINDOW[1] / 2
    assert seen["height"] > 100
    text = seen["text"]
    assert "Drift: drift alert (status: alert)" in text
    assert result["alerts"][0] in text
    # Every column in the table, by score; then performance and the chunks; then Evidently's.
    for name in config.features:
        assert name in text
    assert "estimated" in text
    assert "Chunks over time" in text
    assert "Value Drift for column AGEP" in dom
