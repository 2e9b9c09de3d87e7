"""A small OpenAI-compatible chat server on 127.0.0.1 for fault tests.

It answers ``POST /v1/chat/completions`` (and ``GET /v1/models``). What it does for a request
is written into the request itself, as directives in the last user message, so one batch can
mix good and bad rows:

* ``[[fail:500x2]]`` / ``[[fail:429x1]]``: the first N attempts of this exact message get that
  HTTP status (429s carry ``Retry-After``, see ``retry_after``), later ones succeed; without
  ``xN`` every attempt fails.
* ``[[hang]]``: no answer for ``hang_seconds`` (longer than any test's client timeout).
* ``[[garbage]]``: HTTP 200 with a body that is not JSON; ``[[noshape]]``: JSON, no choices.
* ``[[sleep:0.2]]``: answer normally after that many seconds.
* ``[[null]]``: ``content: null``; ``[[truncated]]``: a body cut off mid-JSON;
  ``[[surrogate]]``: an answer holding a lone surrogate (``"\\udc80"`` in the JSON).
* ``fail_all = 500`` (an attribute, settable while the server runs): every chat request gets
  that status, whatever it says; ``None`` (the default) switches it off.
* ``[[reply:TEXT]]``: answer with TEXT verbatim (e.g. a judge's JSON verdict).
* otherwise ``responder(message)`` if the server was given one and it returns text (e.g. a
  judge that grades correctly), else ``echo: <message>`` (deterministic).

Usage counts whitespace-separated words. The server records every request body and its arrival
time, the number of requests, and the highest number of requests it was serving at the same time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_DIRECTIVE = re.compile(r"\[\[(\w+)(?::(.*?))?\]\]", re.DOTALL)


class FakeOpenAIServer:
    def __init__(self, hang_seconds: float = 10.0, retry_after: str = "0.05",
                 served_model: str = "fake-model",
                 responder: Callable[[str], str | None] | None = None):
        self.responder = responder
        self.fail_all: int | None = None
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.served_model = served_model
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each chat request
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # do not wait for hanging requests on shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.bodies)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- behaviour -------------------------------------------------------------------------

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body bytes) for one chat-completion request."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or "model" not in body:
            return _json(400, {"error": {"message": "model and messages are required"}})
        if body["model"] != self.served_model:
            return _json(404, {"error": {"message": f"model {body['model']!r} does not exist"}})
        prompt = str(messages[-1].get("content", ""))
        with self._lock:
            self.attempts[prompt] += 1
            attempt = self.attempts[prompt]
        if self.fail_all is not None:
            return _json(self.fail_all, {"error": {"message": f"server down ({self.fail_all})"}})
        directives = {name: value for name, value in _DIRECTIVE.findall(prompt)}
        if "fail" in directives:
            status, _, times = directives["fail"].partition("x")
            if not times or attempt <= int(times):
                headers = {"Retry-After": self.retry_after} if status == "429" else {}
                return _json(int(status), {"error": {"message": f"injected {status}"}}, headers)
        if "hang" in directives:
            self._stopping.wait(self.hang_seconds)
            return _json(200, _completion(body, "too late"))
        if "garbage" in directives:
            return 200, {"Content-Type": "application/json"}, b"<html>this is not json"
        if "noshape" in directives:
            return _json(200, {"id": "x", "object": "chat.completion"})
        if "null" in directives:
            body_out = _completion(body, "")
            body_out["choices"][0]["message"]["content"] = None
            return _json(200, body_out)
        if "truncated" in directives:
            return 200, {"Content-Type": "application/json"}, json.dumps(_completion(body, "x")).encode()[:40]
        if "surrogate" in directives:
            payload = json.dumps(_completion(body, "caf\udc80 #### 1"), ensure_ascii=True)
            return 200, {"Content-Type": "application/json"}, payload.encode()
        if "sleep" in directives:
            self._stopping.wait(float(directives["sleep"]))
        text = directives.get("reply")
        if text is None and self.responder is not None:
            text = self.responder(prompt)
        if text is None:
            text = f"echo: {prompt}"
        return _json(200, _completion(body, text))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(*_json(200, {"object": "list", "data": [
                        {"id": server.served_model, "object": "model", "owned_by": "fake"}]}))
                else:
                    self._send(*_json(404, {"error": {"message": "not found"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(*_json(404, {"error": {"message": "not found"}}))
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(*_json(400, {"error": {"message": "body is not JSON"}}))
                    return
                with server._lock:
                    server.bodies.append(body)
                    server.arrivals.append(time.monotonic())
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.respond(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                self._send(*reply)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to deliver

        return Handler


def grading_judge(prompt: str) -> str | None:
    """A capable judge: reads the references and the response out of the judge prompt and
    grades by normalised containment, as a strong model would on these easy cases."""
    from judges.nq import normalize

    if "Reference answers:" not in prompt:
        return None
    references = re.findall(r"^- (.+)$", prompt.split("Reference answers:", 1)[1], re.M)
    response = prompt.split("\nResponse: ", 1)[1].split("\n\nCount the response", 1)[0]
    correct = any(normalize(r) and normalize(r) in normalize(response) for r in references)
    reason = "Names the reference answer." if correct else "Gives another answer."
    return json.dumps({"reason": reason, "correct": correct})


def _json(status: int, payload: dict[str, Any],
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, dict(headers or {}), json.dumps(payload).encode()


def _words(text: str) -> int:
    return len(text.split())


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_words = sum(_words(str(m.get("content", ""))) for m in body["messages"])
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": _words(text),
                  "total_tokens": prompt_words + _words(text)},
    }


if __name__ == "__main__":  # handy for poking at it by hand
    with FakeOpenAIServer() as fake:
        print(fake.base_url, flush=True)
        threading.Event().wait()
