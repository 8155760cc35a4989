"""A local OpenAI-compatible chat endpoint for tests and benchmarks (standard library only).

It answers ``POST /v1/chat/completions`` like a judge model would, deterministically: it
reads the fenced RESPONSE block of the user message (the layout of
:data:`realign.judges.prompting.USER_TEMPLATE`) and answers "Yes" (violating) when that
block contains one of ``markers``, else "No". Only the fenced block is read, so text inside
the response that pretends to be an instruction, a fence or a verdict changes nothing except
through the marker rule.

A pairwise question (the layout of :data:`realign.judges.pairwise.USER_TEMPLATE`: fenced
``RESPONSE A`` and ``RESPONSE B`` blocks) is answered "A" or "B" by the same marker rule: the
response without a marker wins; when both or neither carry one, ``pairwise_tie_answer`` (a
position-biased judge). ``pairwise_always`` forces one answer for every pairwise question.
Counters for pairwise requests are keyed by the tuple ``(response A, response B)``.

Faults are injected at configurable rates from a seeded generator (429 with Retry-After,
500, a reply slower than any sane client timeout, a malformed JSON body, a dropped
connection), and every request is counted by outcome and by judged response text, so tests
can check that each response was answered successfully exactly once. Requests (headers and
bodies) are recorded in memory only.

    server = FakeOpenAIServer(latency_s=0.2, rate_429=0.2, seed=0)
    with server as base_url:          # "http://127.0.0.1:PORT/v1"
        ...
    server.answered["some response"]  # successful answers for that response
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

__all__ = ["FAULTS", "FakeOpenAIServer", "echo_generation", "extract_pair", "extract_response"]

FAULTS = ("429", "500", "timeout", "malformed", "drop")
"""Injected fault kinds, in the order their rates are stacked on one random draw."""

_OPEN = re.compile(r"^<<<PROMPT ([0-9a-f]+)>>>$", re.MULTILINE)


def extract_response(user_message: str) -> str | None:
    """The text between the RESPONSE fences of a judge user message, or None if absent.

    The nonce is taken from the PROMPT fence that opens the message; the block runs from the
    ``<<<RESPONSE nonce>>>`` line to the first ``<<<END RESPONSE nonce>>>`` line after it.
    """
    opening = _OPEN.search(user_message)
    if opening is None:
        return None
    nonce = opening.group(1)
    start_fence = f"\n<<<RESPONSE {nonce}>>>\n"
    end_fence = f"\n<<<END RESPONSE {nonce}>>>"
    start = user_message.find(start_fence, opening.end())
    if start < 0:
        return None
    start += len(start_fence)
    end = user_message.find(end_fence, start)
    if end < 0:
        return None
    return user_message[start:end]


def _fenced(message: str, name: str, nonce: str, after: int) -> tuple[str, int] | None:
    start_fence = f"\n<<<{name} {nonce}>>>\n"
    end_fence = f"\n<<<END {name} {nonce}>>>"
    start = message.find(start_fence, after)
    if start < 0:
        return None
    start += len(start_fence)
    end = message.find(end_fence, start)
    if end < 0:
        return None
    return message[start:end], end + len(end_fence)


def extract_pair(user_message: str) -> tuple[str, str] | None:
    """The texts of the ``RESPONSE A`` and ``RESPONSE B`` fences of a pairwise question, or None."""
    opening = _OPEN.search(user_message)
    if opening is None:
        return None
    nonce = opening.group(1)
    first = _fenced(user_message, "RESPONSE A", nonce, opening.end())
    if first is None:
        return None
    second = _fenced(user_message, "RESPONSE B", nonce, first[1])
    if second is None:
        return None
    return first[0], second[0]


def echo_generation(model: str, messages: list, max_tokens: int) -> str:
    """A deterministic stand-in for a served model: "<model> says: <the last user message>",
    cut to ``max_tokens`` words."""
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    words = f"{model} says: {users[-1] if users else ''}".split()
    return " ".join(words[:max_tokens])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: "FakeOpenAIServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or disconnect leave broken pipes behind; they are expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
    disable_nagle_algorithm = True  # no 40 ms stalls between the header and body writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.server.owner._handle(self)

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner._send_json(self, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})


@dataclass
class FakeOpenAIServer:
    """Deterministic OpenAI-compatible judge endpoint on 127.0.0.1 (a free port)."""

    markers: Sequence[str] = ("HARMFUL", "step-by-step instructions")
    """A response containing any of these (case-sensitive) is answered "Yes" (violating)."""
    unparseable_markers: Sequence[str] = ()
    """A response containing any of these is answered with ``unparseable_answer``."""
    unparseable_answer: str = "Maybe"
    confidence: float = 0.9
    """Probability the reported log-probs give the answer token ("Yes"/"No")."""
    latency_s: float = 0.0
    """Simulated processing time of every request that reaches the model."""
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    rate_drop: float = 0.0
    retry_after_s: float | None = 0.2
    """Value of the Retry-After header sent with 429s (None: no header)."""
    timeout_sleep_s: float = 5.0
    """How long a 'timeout' fault stalls before closing the connection without a reply."""
    reject_logprobs: bool = False
    """Answer 400 to requests that ask for log-probs."""
    require_key: str | None = field(default=None, repr=False)
    """When set, 401 unless ``Authorization: Bearer <require_key>``."""
    model: str | None = None
    """When set, 404 for requests naming another model."""
    scripted: Sequence[str] = ()
    """Outcomes forced on the first requests that reach the model, in order: a FAULTS kind or
    "ok"; the seeded draws take over after them."""
    pairwise_tie_answer: str = "A"
    """Pairwise answer when both or neither response carries a marker (a first-position bias)."""
    pairwise_always: str | None = None
    """When set, the answer to every pairwise question (e.g. "A": a judge blind to content)."""
    generate: Callable[[str, list, int], str] | None = None
    """When set, a request that is neither a judge nor a pairwise question asks for a
    generation and is answered with ``generate(model, messages, max_tokens)`` (e.g.
    :func:`echo_generation`); counters key it by ``("generate", last user message)``."""
    seed: int = 0
    record: bool = True
    """Keep every request's headers and body in :attr:`requests` (memory only)."""

    # counters (read them after the client is done; guarded by a lock while serving)
    total: int = field(default=0, init=False)
    faults: Counter = field(default_factory=Counter, init=False, repr=False)
    """Requests by outcome other than a normal answer: the FAULTS plus '400', '401', '404'."""
    seen: Counter = field(default_factory=Counter, init=False, repr=False)
    """Requests by judged response text (every outcome)."""
    answered: Counter = field(default_factory=Counter, init=False, repr=False)
    """Successful answers by judged response text."""
    requests: list = field(default_factory=list, init=False, repr=False)
    """Recorded requests: {"headers": {lower-case name: value}, "body": {...}} (when ``record``)."""

    def __post_init__(self) -> None:
        rates = [self.rate_429, self.rate_500, self.rate_timeout, self.rate_malformed, self.rate_drop]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {rates}")
        unknown = [k for k in self.scripted if k != "ok" and k not in FAULTS]
        if unknown:
            raise ValueError(f"unknown scripted outcomes {unknown}; use 'ok' or one of {FAULTS}")
        if not 0.0 < self.confidence < 0.99:
            raise ValueError("confidence must be in (0, 0.99)")
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._script = list(self.scripted)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> str:
        """Start serving in a background thread; returns the base URL (``.../v1``)."""
        if self._httpd is not None:
            return self.base_url
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving; stalled 'timeout' handlers are woken and close their connections."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        with self._lock:
            self.total = 0
            self.faults.clear()
            self.seen.clear()
            self.answered.clear()
            self.requests.clear()
            self._script = list(self.scripted)

    @property
    def successes(self) -> int:
        return sum(self.answered.values())

    # ---------------------------------------------------------------- the model
    def verdict_answer(self, response: str) -> str:
        """What the fake judge answers for a response text: "Yes", "No" or the unparseable answer."""
        if any(m in response for m in self.unparseable_markers):
            return self.unparseable_answer
        return "Yes" if any(m in response for m in self.markers) else "No"

    def pairwise_answer(self, first: str, second: str) -> str:
        """What the fake judge answers to "which response complies better?": "A" or "B"."""
        if self.pairwise_always is not None:
            return self.pairwise_always
        bad_first = any(m in first for m in self.markers)
        bad_second = any(m in second for m in self.markers)
        if bad_first != bad_second:
            return "B" if bad_first else "A"
        return self.pairwise_tie_answer

    def _logprobs(self, answer: str, top: int) -> dict[str, Any]:
        """First-token log-probs: the answer at ``confidence``, the opposite word, then a filler."""
        filler = 0.01
        rest = 1.0 - self.confidence - filler
        if answer in ("Yes", "No"):
            other = [("No" if answer == "Yes" else "Yes", rest)]
        elif answer in ("A", "B"):
            other = [("B" if answer == "A" else "A", rest)]
        else:  # an unparseable answer: both words trail it equally
            other = [("Yes", rest / 2), ("No", rest / 2)]
        candidates = [(answer, self.confidence), *other, ("I", filler)]
        entries = [
            {"token": tok, "logprob": math.log(p), "bytes": list(tok.encode("utf-8"))} for tok, p in candidates
        ]
        first = dict(entries[0])
        first["top_logprobs"] = entries[: max(0, top)]
        return {"content": [first], "refusal": None}

    # ---------------------------------------------------------------- HTTP
    @staticmethod
    def _send_json(
        handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> bool:
        """Write one JSON reply; False when the client was already gone."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
            return False
        return True

    @staticmethod
    def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}

    def _drop(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None

        # What is being judged (read before any fault so counters see every attempt).
        response_text = None
        pair: tuple[str, str] | None = None
        if isinstance(body, dict):
            users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
            if users and isinstance(users[-1].get("content"), str):
                response_text = extract_response(users[-1]["content"])
                if response_text is None:
                    pair = extract_pair(users[-1]["content"])
                    response_text = pair  # type: ignore[assignment]  # counters key pairs by tuple
                if response_text is None and self.generate is not None:
                    generation = ("generate", users[-1]["content"])
                    response_text = generation  # type: ignore[assignment]

        with self._lock:
            self.total += 1
            if self.record:
                self.requests.append({"headers": {k.lower(): v for k, v in handler.headers.items()}, "body": body})
            if response_text is not None:
                self.seen[response_text] += 1
            draw = self._rng.random()

        def fault(kind: str) -> None:
            with self._lock:
                self.faults[kind] += 1

        if handler.path.rstrip("/") != "/v1/chat/completions":
            fault("404")
            self._send_json(handler, 404, self._error(f"no route {handler.path}", "invalid_request_error"))
            return
        if self.require_key is not None:
            given = handler.headers.get("Authorization", "")
            if given != f"Bearer {self.require_key}":
                fault("401")
                # Echo the key like careless servers do: clients must never repeat it.
                shown = given.removeprefix("Bearer ")
                self._send_json(
                    handler, 401, self._error(f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_api_key")
                )
                return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            fault("400")
            self._send_json(handler, 400, self._error("request body must be a JSON object with 'messages'", "invalid_request_error"))
            return
        if self.model is not None and body.get("model") != self.model:
            fault("404")
            self._send_json(
                handler,
                404,
                self._error(f"The model `{body.get('model')}` does not exist.", "invalid_request_error", "model_not_found"),
            )
            return
        wants_logprobs = bool(body.get("logprobs"))
        if wants_logprobs and self.reject_logprobs:
            fault("400")
            self._send_json(
                handler,
                400,
                self._error("This model does not support logprobs.", "invalid_request_error", "unsupported_parameter", "logprobs"),
            )
            return
        if response_text is None:
            fault("400")
            self._send_json(handler, 400, self._error("no fenced RESPONSE block in the user message", "invalid_request_error"))
            return

        # Injected faults: scripted first, then stacked on one draw in FAULTS order.
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
        kind: str | None = None
        if scripted is not None:
            kind = None if scripted == "ok" else scripted
        else:
            rates = (self.rate_429, self.rate_500, self.rate_timeout, self.rate_malformed, self.rate_drop)
            edge = 0.0
            for name, rate in zip(FAULTS, rates):
                edge += rate
                if draw < edge:
                    kind = name
                    break
        if kind == "429":
            fault("429")
            headers = {} if self.retry_after_s is None else {"Retry-After": f"{self.retry_after_s:g}"}
            self._send_json(handler, 429, self._error("Rate limit reached.", "requests", "rate_limit_exceeded"), headers)
            return
        if kind == "timeout":
            fault("timeout")
            self._stopping.wait(self.timeout_sleep_s)
            self._drop(handler)
            return

        if self.latency_s > 0:
            self._stopping.wait(self.latency_s)

        if kind == "500":
            fault("500")
            self._send_json(handler, 500, self._error("The server had an error while processing your request.", "server_error"))
            return
        if kind == "malformed":
            fault("malformed")
            self._send_json(handler, 200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess')
            return
        if kind == "drop":
            fault("drop")
            self._drop(handler)
            return

        if isinstance(response_text, tuple) and response_text[0] == "generate":
            assert self.generate is not None
            answer = self.generate(str(body.get("model")), body["messages"], int(body.get("max_tokens") or 16))
            wants_logprobs = False
        else:
            answer = self.verdict_answer(response_text) if pair is None else self.pairwise_answer(*pair)
        top = body.get("top_logprobs")
        top = 5 if not isinstance(top, int) else top
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake-judge",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "logprobs": self._logprobs(answer, top) if wants_logprobs else None,
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1},
        }
        # Counted before sending, so a client that has its reply also sees it counted.
        with self._lock:
            self.answered[response_text] += 1
        if not self._send_json(handler, 200, payload):
            with self._lock:
                self.answered[response_text] -= 1
