"""Blocking HTTP of the ``openai_server`` runner: its small control requests (health, models,
tokenize, version) and the quality evals' completions.

A completion is one non-streaming request to the chat API (the prompt as one user message, the
server applies the model's chat template) or the completions API (the raw prompt), greedy
(temperature 0), ending where the server ends it: EOS / end of turn ("stop") or ``max_tokens``
("length"). Unlike the benchmark's stream it sends neither ``ignore_eos`` nor ``min_tokens``.
The counts are the server's ``usage``; an answer without one is counted through the server's
tokenize endpoint (the raw prompt; the generated text less the ids added to any text).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from runners.base import Completion
from runners.sse import error_message, parse_json

APIS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
CONTROL_TIMEOUT_S = 30.0  # health, models, tokenize, version: small synchronous requests
GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0}
# Greedy fields a launch profile's server needs beyond GREEDY: llama-cpp-python's server
# applies its default repeat_penalty of 1.1 even at temperature 0 (llama-server's default is
# 1.0; trtllm-serve refuses unknown fields, so nothing is added for the other profiles).
PROFILE_GREEDY: dict[str, dict[str, Any]] = {
    "llama_cpp_python": {"repeat_penalty": 1.0},
    "llama_server": {"repeat_penalty": 1.0},
}


class SyncClient:
    """Blocking requests to one server through urllib (no proxy); every failure raises a
    one-line RuntimeError naming the URL."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url
        self.headers: dict[str, str] = {}
        self.timeout_s = timeout_s  # the control requests' limit
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one request; an error status is returned, not raised."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers | ({"Content-Type": "application/json"} if data else {})
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout_s or self.timeout_s) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None

    def get(self, path: str, ok: tuple[int, ...] = (200,)) -> Any:
        """The decoded JSON of a GET (None for an accepted status other than 200)."""
        status, raw = self.request("GET", path)
        if status not in ok:
            raise RuntimeError(
                f"{self.base_url + path} returned HTTP {status}: {error_message(raw)}"
            )
        return parse_json(raw) if status == 200 else None

    def post(self, path: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The decoded JSON object a POST answers with 200; anything else raises."""
        url = self.base_url + path
        status, raw = self.request("POST", path, body, timeout_s)
        if status != 200:
            message = " ".join(error_message(raw).split())  # one line
            raise RuntimeError(f"{url} returned HTTP {status}: {message}")
        answer = parse_json(raw)
        if not isinstance(answer, dict):
            raise RuntimeError(f"{url} answered with no JSON object: {raw[:200]!r}")
        return answer

    def chat_template(self) -> str | None:
        """llama-server's ``GET /props`` ``chat_template``; None from any other server (vLLM
        and llama-cpp-python expose none) or when the request fails."""
        try:
            status, raw = self.request("GET", "/props")
        except RuntimeError:
            return None
        props = parse_json(raw) if status == 200 else None
        template = props.get("chat_template") if isinstance(props, dict) else None
        return template if isinstance(template, str) and template else None


def completion_body(model: str, prompt: str, n: int, chat: bool, launch: str | None) -> Any:
    """The request body of one eval completion (see the module docstring)."""
    body = {"model": model, "max_tokens": n, "stream": False} | GREEDY
    body |= PROFILE_GREEDY.get(launch or "", {})
    if chat:
        return body | {"messages": [{"role": "user", "content": prompt}]}
    return body | {"prompt": prompt}


def complete(
    client: SyncClient,
    body: dict[str, Any],
    timeout_s: float,
    tokenize: Callable[[str], list[int]],
) -> Completion:
    """POST ``body`` (from ``completion_body``) to its API and read the answer."""
    chat = "messages" in body
    path = APIS["chat" if chat else "completions"]
    answer = client.post(path, body, timeout_s)
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise RuntimeError(f"{client.base_url + path} answered without choices: {answer}"[:300])
    choice = choices[0]
    content = (choice.get("message") or {}).get("content") if chat else choice.get("text")
    text = str(content or "")
    finish = str(choice.get("finish_reason") or "stop")
    usage = answer.get("usage") or {}
    prompt_tokens, output_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if output_tokens is None:
        output_tokens = max(0, len(tokenize(text)) - len(tokenize("")))
    if prompt_tokens is None:
        if chat:
            raise RuntimeError(
                f"{client.base_url} sent no usage, and a chat prompt cannot be counted here"
            )
        prompt_tokens = len(tokenize(body["prompt"]))
    return Completion(text, int(prompt_tokens), int(output_tokens), finish)
