"""Any OpenAI-compatible chat server (a vLLM server, OpenAI, a proxy) as a generation backend.

Same contract as the in-process engine (:mod:`pipeline.backends.base`): one ``Generation``
per conversation, in order, and a failed request becomes that row's ``error`` instead of a
dead run. What a remote server adds, and how it is handled:

* transient failures (connection refused or reset, HTTP 408/409/429/5xx, a body that is
  not a chat completion) are retried with exponential backoff and jitter, honouring
  ``Retry-After``/``retry-after-ms``; after ``max_retries`` retries the row records the error;
  a timeout is retried once only (see ``TIMEOUT_RETRIES``);
* other client errors (HTTP 400/413/422: e.g. the prompt is too long) fail that row at once;
* 401/403/404 mean a wrong key, base URL or model name for every row alike: the batch is
  finished (answers that did arrive are cached) and then :class:`OpenAIBackendError` is raised;
* at most ``max_concurrency`` requests are in flight (asyncio.Semaphore);
* answers are cached on disk (:mod:`pipeline.backends.request_cache`), so a rerun does not pay twice.

The openai client's own retries are switched off (``max_retries=0``) so that retries happen
in one place, where they are counted and the malformed-body case is covered too.

``generate`` is synchronous, like the pipeline that calls it: it runs its own event loop
(on a helper thread if the calling thread already runs one).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline import progress
from pipeline.backends.base import Backend, Generation, Messages, SamplingSettings, request_seed
from pipeline.backends.model import cache_dir
from pipeline.backends.request_cache import RequestCache, request_key
from pipeline.errors import RunFailed

log = logging.getLogger(__name__)

DEFAULT_CACHE_FILE = "openai-requests.sqlite"
_RETRYABLE_STATUS = {408, 409, 429}
_FATAL_STATUS = {401, 403, 404}
#: vLLM sampling fields the OpenAI API lacks, with the values that change nothing (not sent).
_NEUTRAL = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
#: A timeout is retried once (a hiccup), not max_retries times: on a slow server the same
#: request times out again, and each try costs the full timeout (seen against a loaded CPU
#: vLLM server: 5 x 120 s for one judge row).
TIMEOUT_RETRIES = 1


class OpenAIBackendError(RunFailed):
    """A configuration problem every request would hit (key, URL, model name)."""


class MalformedResponse(ValueError):
    """The server answered 2xx with something that is not a chat completion."""


def resolve_api_key(env_name: str | None) -> str:
    """``$<env_name>``, else ``$OPENAI_API_KEY``, else ``EMPTY`` (what vLLM accepts)."""
    for name in (env_name, "OPENAI_API_KEY"):
        if name and os.environ.get(name):
            return os.environ[name]
    return "EMPTY"


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's structured-output request field; vLLM's server turns it into guided decoding."""
    return {"type": "json_schema",
            "json_schema": {"name": str(schema.get("title") or "response"), "schema": schema,
                            "strict": True}}


def parse_completion(body: str) -> Generation:
    """A ``Generation`` out of a chat-completion body; :class:`MalformedResponse` otherwise."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        raise MalformedResponse(f"the body is not JSON: {str(body)[:200]!r}") from None
    if not isinstance(data, dict):
        raise MalformedResponse(f"the body is not a JSON object: {body[:200]!r}")
    if data.get("error"):
        raise MalformedResponse(f"the body holds an error: {str(data['error'])[:300]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse(f"the body has no choices: {body[:200]!r}")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise MalformedResponse(f"choices[0].message.content is not text: {body[:200]!r}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Generation(
        text=content,
        finish_reason=choices[0].get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if name == "retry-after" else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def _run_sync(make_coroutine: Any) -> Any:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(max_workers=1) as pool:  # e.g. called from a notebook
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


class OpenAIBackend(Backend):
    """Chat completions from ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) for ``model``.

    api_key: the key itself; if None it is read from ``$<api_key_env>``, then
        ``$OPENAI_API_KEY``, else ``"EMPTY"`` (a local vLLM server needs none).
    timeout: seconds for one HTTP request (connect + answer).
    max_retries: retries after the first attempt for transient failures.
    backoff_base / backoff_max: the wait before retry ``n`` is ``backoff_base * 2**n`` with
        jitter, or what ``Retry-After`` asks for if longer, never more than ``backoff_max``.
    cache_path: the SQLite request cache; None = ``$S3FT_CACHE_DIR/openai-requests.sqlite``.
    use_cache: False = no disk cache at all.
    cache_namespace: mixed into every cache key (see :mod:`pipeline.backends.request_cache`).
    extra_body: extra JSON fields for every request (vLLM's ``top_k``, ``repetition_penalty``...).
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str | None = "S3FT_API_KEY", max_concurrency: int = 16,
                 timeout: float = 120.0, max_retries: int = 4, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, cache_path: str | Path | None = None,
                 use_cache: bool = True, cache_namespace: str = "",
                 extra_body: dict[str, Any] | None = None):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"OpenAI-compatible base URL {base_url!r} must start with http:// or "
                             f"https:// (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise ValueError("the OpenAI-compatible backend needs a model name (the server's "
                             "served model name)")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError(f"max_concurrency ({max_concurrency}) must be >= 1, max_retries "
                             f"({max_retries}) >= 0 and timeout ({timeout}) > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_name = model
        self.api_key = api_key if api_key is not None else resolve_api_key(api_key_env)
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cache_namespace = cache_namespace
        self.extra_body = dict(extra_body or {})
        self._use_cache = use_cache
        self._cache_path = Path(cache_path) if cache_path else None
        self._cache: RequestCache | None = None
        #: requests (HTTP attempts), cache_hits, retries, errors (failed rows), generations,
        #: prompt_tokens / completion_tokens (of answers fetched now; cached ones cost nothing).
        self.counters: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the request cache; no network (a down server shows up as row errors)."""
        if self._use_cache and self._cache is None:
            if self._cache_path is None:
                self._cache_path = cache_dir() / DEFAULT_CACHE_FILE
            self._cache = RequestCache(self._cache_path)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def served_models(self) -> list[str]:
        """Model names the server lists at ``/models`` (a fail-fast check before a long run)."""
        from openai import OpenAI

        with OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                    max_retries=1) as client:
            return [m.id for m in client.models.list().data]

    # -- requests --------------------------------------------------------------------------

    def request(self, conversation: Messages, sampling: SamplingSettings) -> dict[str, Any]:
        """The JSON body sent for one conversation (also what the cache key hashes)."""
        body: dict[str, Any] = {
            "model": self.model, "messages": conversation, "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        schema = sampling.json_schema
        if schema:
            body["response_format"] = response_format(schema)
        if sampling.seed is not None:  # each conversation its own seed, as in-process
            body["seed"] = request_seed(sampling.seed, json.dumps(conversation, sort_keys=True))
        # What the OpenAI API has no parameter for goes as the extra fields vLLM's server reads
        # (every setting the row's `sampling` column records is sent, none dropped).
        extras = {"top_k": sampling.top_k, "min_p": sampling.min_p,
                  "repetition_penalty": sampling.repetition_penalty}
        body.update({k: v for k, v in extras.items() if v != _NEUTRAL[k]})
        return body

    def _cache_key(self, body: dict[str, Any]) -> str:
        return request_key({"namespace": self.cache_namespace, "body": body,
                            "extra_body": self.extra_body})

    def generate(self, conversations: list[Messages], sampling: SamplingSettings) -> list[Generation]:
        self.start()
        bodies = [self.request(c, sampling) for c in conversations]
        keys = [self._cache_key(b) for b in bodies]
        results: dict[str, Generation] = {}
        todo: dict[str, dict[str, Any]] = {}  # identical requests in a batch are sent once
        for key, body in zip(keys, bodies, strict=True):
            if key in results or key in todo:
                continue
            cached = self._cache.get(key) if self._cache else None
            if cached is not None:
                results[key] = Generation(**cached)
            else:
                todo[key] = body
        self.counters["cache_hits"] += sum(k in results for k in keys)
        progress.advance(sum(k in results for k in keys),
                         sum(results[k].completion_tokens for k in keys if k in results))
        fatal: list[str] = []
        if todo:
            results.update(_run_sync(lambda: self._fetch_all(todo, fatal)))
        generations = [results[k] for k in keys]
        self.counters["generations"] += len(generations)
        self.counters["errors"] += sum(g.error is not None for g in generations)
        if fatal:
            raise OpenAIBackendError(
                f"{self.base_url} refused the requests for model {self.model!r}: {fatal[0]}. "
                f"Check the base URL, the model name (the server's served model name) and the "
                f"API key variable."
            )
        return generations

    async def _fetch_all(self, todo: dict[str, dict[str, Any]],
                         fatal: list[str]) -> dict[str, Generation]:
        from openai import AsyncOpenAI

        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                               max_retries=0) as client:
            answers = await asyncio.gather(*(
                self._fetch_counted(client, semaphore, key, body, fatal)
                for key, body in todo.items()
            ))
        return dict(zip(todo, answers, strict=True))

    async def _fetch_counted(self, client: Any, semaphore: asyncio.Semaphore, key: str,
                             body: dict[str, Any], fatal: list[str]) -> Generation:
        generation = await self._fetch_one(client, semaphore, key, body, fatal)
        progress.advance(1, generation.completion_tokens)  # the running step moves on
        return generation

    async def _fetch_one(self, client: Any, semaphore: asyncio.Semaphore, key: str,
                         body: dict[str, Any], fatal: list[str]) -> Generation:
        import openai

        # vLLM's own fields go in the extra body: the OpenAI client takes no such arguments
        standard = {k: v for k, v in body.items() if k not in _NEUTRAL}
        extra = {**{k: v for k, v in body.items() if k in _NEUTRAL}, **self.extra_body}
        async with semaphore:  # held through backoff waits too: a struggling server gets less
            error = "no attempt made"
            timeouts = 0
            attempts = 0
            for attempt in range(self.max_retries + 1):
                retry_after: float | None = None
                attempts += 1
                self.counters["requests"] += 1
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        **standard, extra_body=extra or None,
                    )
                    generation = parse_completion(raw.text)
                except MalformedResponse as exc:
                    error = f"malformed_response: {exc}"
                except openai.APITimeoutError:
                    error = f"timeout: no answer within {self.timeout:g} s"
                    timeouts += 1
                except openai.APIConnectionError as exc:
                    error = f"connection_error: {exc.__cause__ or exc}"
                except openai.APIStatusError as exc:
                    status = exc.status_code
                    error = f"http_{status}: {str(exc.message)[:300]}"
                    if status in _FATAL_STATUS:
                        fatal.append(error)
                        return Generation(None, None, error=error)
                    if status not in _RETRYABLE_STATUS and status < 500:
                        return Generation(None, None, error=error)  # e.g. prompt too long
                    retry_after = _retry_after_seconds(exc.response.headers)
                except Exception as exc:  # an unexpected client failure: worth one more try
                    error = f"client_error: {type(exc).__name__}: {exc}"
                else:
                    self.counters["prompt_tokens"] += generation.prompt_tokens
                    self.counters["completion_tokens"] += generation.completion_tokens
                    if self._cache is not None:
                        self._cache.put(key, body, {
                            "text": generation.text, "finish_reason": generation.finish_reason,
                            "prompt_tokens": generation.prompt_tokens,
                            "completion_tokens": generation.completion_tokens,
                        })
                    return generation
                if timeouts > TIMEOUT_RETRIES:
                    break  # a request that is slow twice will be slow again: stop paying for it
                if attempt < self.max_retries:
                    self.counters["retries"] += 1
                    delay = self.backoff_base * 2**attempt * random.uniform(0.5, 1.0)
                    delay = min(max(delay, retry_after or 0.0), self.backoff_max)
                    log.debug("request failed (%s); retry %d in %.2f s", error, attempt + 1, delay)
                    await asyncio.sleep(delay)
            return Generation(None, None, error=f"{error} (after {attempts} attempt"
                                                f"{'s' if attempts > 1 else ''})")
