"""Chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp, ...):
the HTTP client that the ``openai`` judges, the ``openai`` oracle and the server generator of
``realign eval`` share.

:class:`ChatClient` owns everything about talking to the endpoint — the API key, bounded
concurrency, retries with exponential backoff and full jitter, Retry-After, fast failure on
client errors, the log-probs fallback. The client library's own retries are switched off: one
retry policy, ours, counted in ``calls``.

The API key is read from ``api_key_file`` or the environment variable ``api_key_env``; it
never appears in an identity, a log line, an exception message or any output file.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from ..config import EndpointConfig
from ..errors import JudgeError
from .endpoints import base_url_of, display_url

__all__ = ["ChatClient", "ChatReply", "TOP_LOGPROBS"]

TOP_LOGPROBS = 5
"""Candidates asked for the first answer token when log-probs are on."""
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_DUMMY_KEY = "sk-local-no-key"
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class ChatReply:
    """One completion: its text and, when asked and supported, the first token's top log-probs."""

    text: str
    top_logprobs: dict[str, float] | None = None
    finish_reason: str | None = None


class _Retryable(Exception):
    """A failed attempt worth repeating (rate limit, server error, timeout, broken reply)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Malformed(Exception):
    """A 2xx reply whose body is not a usable chat completion."""


class _LogprobsRejected(Exception):
    """The server refused the log-probs parameters (400)."""


def _one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000.0
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _body_message(body: Any) -> str | None:
    """The message of an OpenAI-style error body ``{"error": {"message": ...}}``, if any."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return None


def _error_detail(exc: Any) -> str:
    """The server's own error message when it sent one, else the exception text."""
    return _body_message(getattr(exc, "body", None)) or str(getattr(exc, "message", None) or exc)


def _parse_completion(content: bytes, want_logprobs: bool) -> ChatReply:
    """Validate a chat.completion body by hand: anything unusable is :class:`_Malformed`."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Malformed(f"reply is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise _Malformed("reply is not a JSON object")
    if "error" in data and data["error"]:
        raise _Malformed(f"reply carries an error: {_body_message(data) or data['error']}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Malformed("reply has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Malformed("reply has no message")
    text = message.get("content")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _Malformed("reply content is not text")
    top: dict[str, float] | None = None
    if want_logprobs:
        top = {}
        lp = choice.get("logprobs")
        content_lp = lp.get("content") if isinstance(lp, dict) else None
        if isinstance(content_lp, list) and content_lp and isinstance(content_lp[0], dict):
            first = content_lp[0]
            candidates = list(first.get("top_logprobs") or [])
            candidates.append({"token": first.get("token"), "logprob": first.get("logprob")})
            for cand in candidates:
                if not isinstance(cand, dict):
                    continue
                token, logprob = cand.get("token"), cand.get("logprob")
                if isinstance(token, str) and isinstance(logprob, (int, float)) and math.isfinite(logprob):
                    top.setdefault(token, float(logprob))
    finish = choice.get("finish_reason")
    return ChatReply(text=text, top_logprobs=top, finish_reason=finish if isinstance(finish, str) else None)


def _read_api_key(config: EndpointConfig, role: str, endpoint: str, is_local: bool) -> str:
    """The API key from ``api_key_file`` or ``$api_key_env``; a dummy one for a local server
    that needs none. A missing or unreadable key is a JudgeError naming where to put it."""
    if config.api_key_file is not None:
        try:
            key = config.api_key_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise JudgeError(f"{config.api_key_file}: cannot read the {role} API key file ({exc.strerror})") from None
        if not key:
            raise JudgeError(f"{config.api_key_file}: the {role} API key file is empty")
        return key
    key = os.environ.get(config.api_key_env, "").strip()
    if key:
        return key
    if is_local:
        return _DUMMY_KEY
    raise JudgeError(
        f"{role} endpoint {endpoint}: no API key; set the environment variable "
        f"{config.api_key_env} (or {role}.api_key_file)"
    )


def _classify(
    exc: Exception, asked_logprobs: bool, config: EndpointConfig, fail: Callable[[str], JudgeError]
) -> Exception:
    """Map a failed attempt to _Retryable, _LogprobsRejected, or a JudgeError made by ``fail``
    (the client's own, which names the endpoint and scrubs the key); anything that is not an
    OpenAI error is re-raised."""
    import openai

    if isinstance(exc, _Malformed):
        return _Retryable(f"malformed reply: {exc}")
    if isinstance(exc, openai.APITimeoutError):
        return _Retryable(f"timed out after {config.timeout_s:g} s")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return _Retryable(f"connection error ({detail})")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _error_detail(exc)
        if status == 429 or status == 408 or status >= 500:
            return _Retryable(f"HTTP {status}: {detail}", _parse_retry_after(exc.response.headers))
        if status == 400 and asked_logprobs and "logprob" in detail.lower():
            return _LogprobsRejected(detail)
        if status in (401, 403):
            source = str(config.api_key_file) if config.api_key_file else f"${config.api_key_env}"
            return fail(f"the API key was rejected (HTTP {status}: {detail}); check {source}")
        if status == 404:
            return fail(f"not found (HTTP 404: {detail}); check the model name and base_url")
        return fail(f"request refused (HTTP {status}: {detail})")
    if isinstance(exc, openai.OpenAIError):
        return fail(f"{type(exc).__name__}: {exc}")
    raise exc


class _LoopState:
    """The parts of a client that belong to one event loop (HTTP pool, semaphore)."""

    def __init__(self, client: Any, concurrency: int) -> None:
        self.client = client
        self.semaphore = asyncio.Semaphore(concurrency)
        self.loop = asyncio.get_running_loop()


class ChatClient:
    """Chat completions from an OpenAI-compatible endpoint, with our retry policy.

    - at most ``config.concurrency`` requests in flight (a semaphore; waits for a retry happen
      outside it, so a backing-off request does not hold a slot);
    - retried, up to ``config.max_retries`` times: 429, 408, 5xx, timeouts, connection errors
      and dropped connections, malformed bodies. Delay: ``Retry-After`` when the server sends
      one, else exponential backoff with full jitter — uniform in
      [0, min(backoff_max_s, backoff_base_s·2^k)] before retry k+1; both capped at backoff_max_s;
    - other 4xx fail at once (401/403: bad key, 404: unknown model or path);
    - a 400 that names ``logprobs`` switches log-probs off for the rest of this client's life
      and repeats the request without them (not counted as a retry);
    - ``calls`` counts HTTP requests that were answered (a response or an error), retries
      included; one cancelled in flight is not counted.

    The underlying ``AsyncOpenAI`` client is created lazily inside the running event loop
    (and again if a later call runs in another loop); call :meth:`aclose` when done.
    """

    def __init__(self, config: EndpointConfig, *, role: str = "judge") -> None:
        if not config.model:
            raise JudgeError(f"{role}: 'model' is required for an OpenAI-compatible endpoint")
        self.config = config
        self.role = role
        self.model = config.model
        self.base_url = base_url_of(config)
        self.endpoint = display_url(self.base_url)
        #: names the endpoint in cache identities without revealing it (a hash of scheme, host,
        #: port and path): another server with the same model name is another judge
        self.endpoint_id = "endpoint-" + hashlib.sha256(self.endpoint.encode()).hexdigest()[:10]
        self._api_key = _read_api_key(config, role, self.endpoint, self.is_local)
        self.calls = 0
        self.retries = 0
        self.logprobs_supported = True
        self._rng = random.Random()
        self._state: _LoopState | None = None
        self._fatal: JudgeError | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"ChatClient(role={self.role!r}, endpoint={self.endpoint!r}, model={self.model!r})"

    # ------------------------------------------------------------------ setup
    @property
    def is_local(self) -> bool:
        return (urlsplit(self.base_url).hostname or "").lower() in _LOCAL_HOSTS

    def _scrub(self, text: str) -> str:
        """One line, without the API key even if a server echoed it."""
        text = str(text)
        key = self._api_key
        if key and key != _DUMMY_KEY:
            text = text.replace(key, "***")
        return _one_line(text)

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.config.timeout_s,
                max_retries=0,
            )
            self._state = _LoopState(client, self.config.concurrency)
        return self._state

    async def aclose(self) -> None:
        """Close the HTTP connections of the current loop's client."""
        state, self._state = self._state, None
        self._fatal = None  # a later run may follow a fixed key or model
        if state is not None and state.loop is asyncio.get_running_loop():
            await state.client.close()

    # ------------------------------------------------------------------ requests
    def _fail(self, message: str) -> JudgeError:
        return JudgeError(self._scrub(f"{self.role} endpoint {self.endpoint} (model {self.model}): {message}"))

    def _delay(self, retry: int, retry_after: float | None) -> float:
        cap = self.config.backoff_max_s
        if retry_after is not None:
            return min(cap, retry_after)
        return self._rng.uniform(0.0, min(cap, self.config.backoff_base_s * (2.0**retry)))

    async def chat(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int,
        temperature: float,
        logprobs: bool = False,
        top_logprobs: int = TOP_LOGPROBS,
    ) -> ChatReply:
        """One chat completion, retried per the policy above; raises JudgeError when it gives up.

        With ``logprobs`` the reply carries the first token's top log-probs — ``{}`` when the
        server sent none, None when log-probs were not asked or the server does not support them.
        """
        state = self._loop_state()
        retry = 0
        while True:
            async with state.semaphore:
                if self._fatal is not None:  # the endpoint refused an earlier request: no more
                    raise self._fatal
                # Decided once the slot is ours, so a logprobs refusal seen meanwhile counts.
                asked = logprobs and self.logprobs_supported
                params: dict[str, Any] = {
                    "model": self.model,
                    "messages": list(messages),
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                }
                if asked:
                    params["logprobs"] = True
                    params["top_logprobs"] = top_logprobs
                # Counted once an answer (or an error) came back: a request cancelled in flight
                # is not a call, whether or not it reached the server.
                answered = False
                try:
                    # The generic POST skips the client's per-request typed-params transform
                    # (a third of its CPU time); the body is validated by _parse_completion.
                    content = await state.client.post("/chat/completions", cast_to=bytes, body=params)
                    answered = True
                    self.calls += 1
                    return _parse_completion(content, asked)
                except Exception as exc:  # noqa: BLE001 - classified below; Cancelled/KeyboardInterrupt pass
                    if not answered:
                        self.calls += 1
                    outcome = _classify(exc, asked, self.config, self._fail)
            if isinstance(outcome, _LogprobsRejected):
                self.logprobs_supported = False
                continue
            if isinstance(outcome, JudgeError):
                self._fatal = outcome
                raise outcome from None
            assert isinstance(outcome, _Retryable)
            if retry >= self.config.max_retries:
                raise self._fail(f"gave up after {retry + 1} attempts; last error: {outcome}")
            delay = self._delay(retry, outcome.retry_after)
            retry += 1
            self.retries += 1
            await asyncio.sleep(delay)
