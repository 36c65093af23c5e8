"""report.html of a real selection (the offline example crowd, clusters on, MiniLM embeddings), opened in
headless Chromium over the DevTools protocol: no console errors or exceptions, every figure decoded
(naturalWidth > 0), nothing fetched from the network. Skips with the reason when chromium is missing
(`apt-get install -y chromium`; .ci/run installs it)."""

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from crowdselect import cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def inspect_page(ws_url: str, url: str, screenshot: Path | None) -> dict:
    """Open `url` in the page target, collect console errors, exceptions and requests; measure the images."""
    import aiohttp

    seen = {"errors": [], "requests": []}
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10**6))
        replies: dict[int, asyncio.Future] = {}

        async def call(method, **params):
            i = next(ids)
            replies[i] = asyncio.get_running_loop().create_future()
            await ws.send_json({"id": i, "method": method, "params": params})
            return await asyncio.wait_for(replies[i], 60)

        async def pump():
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in replies:
                    replies[data["id"]].set_result(data.get("result", data.get("error")))
                elif data.get("method") == "Runtime.exceptionThrown":
                    seen["errors"].append(data["params"]["exceptionDetails"].get("text"))
                elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                    seen["errors"].append(str(data["params"]["args"]))
                elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                    seen["errors"].append(data["params"]["entry"]["text"])
                elif data.get("method") == "Network.requestWillBeSent":
                    seen["requests"].append(data["params"]["request"]["url"])

        task = asyncio.create_task(pump())
        for domain in ("Runtime", "Log", "Network", "Page"):
            await call(f"{domain}.enable")
        await call("Page.navigate", url=url)
        for _ in range(120):
            state = await call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
            if state["result"]["value"] == "complete":
                break
            await asyncio.sleep(0.5)
        js = "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        seen["images"] = (await call("Runtime.evaluate", expression=js, returnByValue=True))["result"]["value"]
        if screenshot is not None:
            await call("Emulation.setDeviceMetricsOverride", width=1100, height=1400, deviceScaleFactor=1, mobile=False)
            shot = await call("Page.captureScreenshot", format="png")
            import base64

            screenshot.write_bytes(base64.b64decode(shot["data"]))
        task.cancel()
    return seen


def open_in_chromium(path: Path, screenshot: Path | None = None) -> dict:
    port = free_port()
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--remote-debugging-port={port}", f"--user-data-dir={path.parent / 'chromium-profile'}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read())
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                assert proc.poll() is None, "chromium exited while starting"
                time.sleep(0.5)
        return asyncio.run(inspect_page(page["webSocketDebuggerUrl"], path.as_uri(), screenshot))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_selection_report_renders_in_chromium(ray_local, tmp_path):
    out = tmp_path / "select"
    assert cli.main(["select", "--config", str(ROOT / "examples" / "crowd.yaml"), "--input",
                     str(ROOT / "examples" / "crowd.jsonl"), "--k", "8", "--clusters", "4", "--out", str(out)]) == 0
    report = out / "report.html"
    text = report.read_text()
    for title in ("Metrics: pool vs selected", "Metric correlations", "Reward by generator", "Clusters (the embeddings",
                  "Per-cluster quotas", "Selected examples"):
        assert title in text, title
    assert "http://" not in text and "https://" not in text
    seen = open_in_chromium(report, tmp_path / "report.png")
    assert seen["errors"] == []
    assert len(seen["images"]) >= 4 and all(done and width > 0 for _, done, width in seen["images"]), seen["images"]
    assert [u for u in seen["requests"] if not u.startswith(("file:", "data:"))] == []
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
