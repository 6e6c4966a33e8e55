"""The synthetic OpenAI-compatible server: endpoints, error bodies and its process helper."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.synthetic_server import ServerProcess, main

SCRIPT = Path(__file__).resolve().parents[1] / "synthetic_server.py"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with ServerProcess("--ttft-s", "0", "--itl-s", "0", "--reasoning-tokens", "2") as server:
        yield server.url


def call(url: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            raw = e.read()
        return e.code, json.loads(raw) if e.headers.get_content_type().endswith("json") else raw


def test_listening_line_pinning_and_clean_exit_on_sigterm() -> None:
    with ServerProcess("--port", "0", cpu=0) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server._proc is not None and os.sched_getaffinity(server._proc.pid) == {0}
        assert call(server.url, "/health") == (200, {"status": "ok"})
    assert server.returncode == 0


def test_clean_exit_on_sigint() -> None:
    argv = [sys.executable, str(SCRIPT)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("LISTENING http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_models_and_tokenize(url: str) -> None:
    assert call(url, "/v1/models")[1]["data"][0] == {"id": "synthetic", "object": "model"}
    expected = {"tokens": [1, 3, 5], "count": 3}
    assert call(url, "/tokenize", {"content": "a bcd efghi"}) == (200, expected)
    assert call(url, "/tokenize", {"model": "m", "prompt": "a bcd efghi"}) == (200, expected)


def test_non_streaming_chat_has_usage_and_reasoning(url: str) -> None:
    body = {"messages": [{"role": "user", "content": "x y z"}], "max_completion_tokens": 5}
    status, reply = call(url, "/v1/chat/completions", body)
    assert status == 200 and reply["object"] == "chat.completion"
    message = reply["choices"][0]["message"]
    assert message == {"role": "assistant", "content": " tok" * 3, "reasoning_content": " tok" * 2}
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def test_non_streaming_completion_of_token_ids(url: str) -> None:
    status, reply = call(url, "/v1/completions", {"prompt": [1, 2, 3, 4], "max_tokens": 2})
    assert status == 200 and reply["choices"][0]["text"] == " tok tok"
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/completions", b"{not json", "invalid JSON body"),
        ("/v1/completions", b'{"max_tokens": 4}', "'prompt' must be a string"),
        ("/v1/completions", b'{"prompt": "a", "max_tokens": 0}', "positive integer"),
        ("/v1/chat/completions", b'{"messages": []}', "'messages' must be a non-empty list"),
        ("/tokenize", b"{}", "'prompt' (vLLM) or 'content'"),
    ],
)
def test_bad_requests_get_openai_error_bodies(
    url: str, path: str, body: bytes, message: str
) -> None:
    status, reply = call(url, path, raw=body)
    assert status == 400
    assert message in reply["error"]["message"]
    assert reply["error"]["type"] == "invalid_request_error"


def stream_events(url: str, body: dict[str, Any]) -> list[Any]:
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


STREAM = {
    "prompt": "a b",
    "max_tokens": 3,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_no_usage_and_finish_reason_stop() -> None:
    args = ("--ttft-s", "0", "--itl-s", "0", "--no-usage", "--finish-reason", "stop")
    with ServerProcess(*args) as server:
        events = stream_events(server.url, STREAM)
    assert events[-1] == "[DONE]" and all("usage" not in e for e in events[:-1])
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]] == [None, None, "stop"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("error_event", [" tok", {"message": "synthetic fault: out of memory", "code": 500}]),
        ("truncate", [" tok"]),  # ends cleanly: no finish_reason, usage or [DONE]
    ],
)
def test_faults_after_n_chunks(fault: str, expected: list[Any]) -> None:
    with ServerProcess("--fault", fault, "--fault-after", "1") as server:
        events = stream_events(server.url, STREAM)
    seen = [e["choices"][0]["text"] if "choices" in e else e["error"] for e in events[:2]]
    assert seen == expected
    assert events[-1] == ("[DONE]" if fault == "error_event" else events[0])


def test_abort_and_http_503_faults() -> None:
    abort = ServerProcess("--fault", "abort", "--fault-after", "1")
    with abort as server, pytest.raises(http.client.IncompleteRead):
        stream_events(server.url, STREAM)
    with ServerProcess("--fault", "http_503") as server:
        status, reply = call(server.url, "/v1/completions", STREAM)
    assert status == 503
    assert reply["error"]["message"] == "synthetic fault: the server is overloaded"


def test_extras_tokenize_only() -> None:
    with ServerProcess("--tokenize", "extras") as server:
        assert call(server.url, "/extras/tokenize", {"input": "a bcd"}) == (200, {"tokens": [1, 3]})
        assert call(server.url, "/tokenize", {"content": "a"})[0] == 404


@pytest.mark.parametrize("bad", [["--fault", "explode"], ["--finish-reason", "eos"]])
def test_cli_rejects_unknown_choices(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(bad)
    assert exit_info.value.code == 2
    assert f"invalid choice: '{bad[1]}'" in capsys.readouterr().err
