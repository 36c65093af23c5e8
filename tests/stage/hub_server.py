"""A minimal Hugging Face Hub on localhost for tests: the four routes huggingface_hub's HfFileSystem reads
datasets through (repo info, tree listing, paths info, file download with Range), over a local folder laid
out as `ROOT/ORG/NAME/...` (every revision serves the same files). No uploads, no auth, no pagination.

    with serve_hub(root) as endpoint:     # "http://127.0.0.1:PORT", for HF_ENDPOINT
        ...
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

API = re.compile(r"^/api/datasets/([^/]+)/([^/]+)(?:/(revision|tree|paths-info)/([^/]+)(?:/(.*))?)?$")
RESOLVE = re.compile(r"^/datasets/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
SHA = "0" * 40


def _entry(repo: Path, p: Path) -> dict:
    rel = p.relative_to(repo).as_posix()
    if p.is_dir():
        return {"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()}
    return {"type": "file", "path": rel, "size": p.stat().st_size, "oid": hashlib.sha1(p.read_bytes()).hexdigest()}


class _Handler(BaseHTTPRequestHandler):
    root: Path

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, obj, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _missing(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        path = unquote(url.path)
        if m := RESOLVE.match(path):
            return self._file(self.root / m[1] / m[2] / m[4])
        m = API.match(path)
        if not m or not (self.root / m[1] / m[2]).is_dir():
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        repo = self.root / m[1] / m[2]
        if m[3] in (None, "revision"):
            return self._json({"id": f"{m[1]}/{m[2]}", "sha": SHA, "private": False, "siblings": []})
        folder = repo / (m[5] or "")
        if not folder.is_dir():
            return self._missing()
        recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
        found = sorted(folder.rglob("*") if recursive else folder.iterdir())
        return self._json([_entry(repo, p) for p in found])

    def do_POST(self) -> None:  # noqa: N802
        m = API.match(unquote(urlparse(self.path).path))
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        repo = self.root / m[1] / m[2]
        paths = [p for p in form.get("paths", []) if (repo / p).exists()]
        self._json([_entry(repo, repo / p) for p in paths])

    def do_HEAD(self) -> None:  # noqa: N802
        self._file(self.root / "/".join(unquote(urlparse(self.path).path).split("/")[2:4])
                   / unquote(urlparse(self.path).path).split("/resolve/", 1)[1].split("/", 1)[1], body=False)

    def _file(self, p: Path, body: bool = True) -> None:
        if not p.is_file():
            return self._missing()
        data = p.read_bytes()
        start, end = 0, len(data) - 1
        if r := re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or ""):
            start, end = int(r[1]), min(int(r[2]) if r[2] else end, end)
        self.send_response(206 if self.headers.get("Range") else 200)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", SHA)
        self.end_headers()
        if body:
            self.wfile.write(data[start: end + 1])
        return None


@contextmanager
def serve_hub(root: Path):
    """Serve `root` (ORG/NAME/... folders) as a Hub's dataset repositories; yields the endpoint URL."""
    handler = type("Handler", (_Handler,), {"root": Path(root)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
