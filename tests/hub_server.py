"""A loopback stand-in for the Hugging Face Hub's HTTP API, for huggingface_hub to talk to
(``HF_ENDPOINT=http://127.0.0.1:PORT``): the endpoints snapshot_download uses (revision info,
recursive tree listing, file HEAD and GET) over local files, and the Hub's error answers
(``X-Error-Code``: RepoNotFound, GatedRepo, RevisionNotFound). Counts file GETs, so a test can
tell a download from a cache hit. Test double only: it serves, it never decides a number."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commit: str
    files: dict[str, Path]  # name in the repo -> local file
    gated: bool = False


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    downloads: Counter[str] = field(default_factory=Counter)  # "repo/file" -> GETs

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output quiet
                return

            def do_GET(self) -> None:
                hub.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Type", "application/json")
        body = json.dumps({"error": code}).encode()
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _json(self, h: BaseHTTPRequestHandler, data: object) -> None:
        body = json.dumps(data).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        api = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        name = (api or resolve).group(1) if (api or resolve) else ""
        repo = self.repos.get(name)
        if repo is None:
            return self._error(h, 404, "RepoNotFound")
        rev = (api.group(3) if api else resolve.group(2)) if (api or resolve) else ""
        if rev not in ("main", repo.commit):
            return self._error(h, 404, "RevisionNotFound")
        if api and api.group(2) == "revision":
            return self._json(h, {"id": name, "sha": repo.commit, "gated": repo.gated})
        if api:
            return self._json(h, [self._entry(n, p) for n, p in sorted(repo.files.items())])
        if repo.gated:
            return self._error(h, 403, "GatedRepo")
        assert resolve is not None
        local = repo.files.get(resolve.group(3))
        if local is None:
            return self._error(h, 404, "EntryNotFound")
        data = local.read_bytes()
        h.send_response(200)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            self.downloads[f"{name}/{resolve.group(3)}"] += 1
            h.wfile.write(data)
        return None

    @staticmethod
    def _entry(name: str, path: Path) -> dict[str, object]:
        data = path.read_bytes()
        return {
            "type": "file",
            "path": name,
            "size": len(data),
            "oid": hashlib.sha1(data).hexdigest(),
            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134},
        }
