#!/usr/bin/env python3
"""Drives the official openai Python SDK for llm-proxy's end-to-end tests.

    client.py SCENARIO [ARGS_JSON]

The SDK finds its base URL and key where any user's program would, in
OPENAI_BASE_URL and OPENAI_API_KEY. ARGS_JSON (a JSON object on argv, else
the CLIENT_ARGS environment variable, else {}) tunes the scenario: "model",
"message", "input", "extra_headers", "max_retries", "include_usage",
"cases" — see each scenario below.

The client keeps the SDK's defaults — its own httpx2 client settings, so
"Accept-Encoding: gzip, deflate", and two retries honouring retry-after and
x-should-retry — except for max_retries where ARGS_JSON sets it. It only adds
event hooks that record every attempt on the wire.

It prints ONE JSON object on stdout: what the scenario observed, plus
"attempts" (one entry per HTTP request the SDK sent, with the response status
it got) and "error" (null, or the SDK exception the call raised). Exit status
1, with a traceback on stderr, means the script itself failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import httpx2
import openai

DEFAULT_MODEL = "gpt-4.1-mini"
EMBEDDING_MODEL = "text-embedding-3-small"

# Response headers worth reporting, beyond every x-ratelimit-* one.
REPORTED_HEADERS = (
    "x-request-id",
    "x-upstream-request-id",
    "content-encoding",
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "cache-status",
)


class Recorder:
    """Records each attempt the SDK makes through httpx2 event hooks."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self._start = time.monotonic()

    def _now(self) -> float:
        return round(time.monotonic() - self._start, 3)

    def on_request(self, request: httpx2.Request) -> None:
        body: Any = None
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(request.read())
            except ValueError:
                body = None
        self.attempts.append(
            {
                "method": request.method,
                "path": request.url.path,
                "sent_at": self._now(),
                "accept_encoding": request.headers.get("accept-encoding"),
                "retry_count": request.headers.get("x-stainless-retry-count"),
                "request_body": body,
                "status": None,
                "received_at": None,
                "content_encoding": None,
            }
        )

    def on_response(self, response: httpx2.Response) -> None:
        attempt = self.attempts[-1]
        attempt["status"] = response.status_code
        attempt["received_at"] = self._now()
        attempt["content_encoding"] = response.headers.get("content-encoding")

    def client(self, **kwargs: Any) -> openai.OpenAI:
        """An SDK client with its default HTTP settings and these hooks."""
        http_client = openai.DefaultHttpxClient(
            event_hooks={"request": [self.on_request], "response": [self.on_response]}
        )
        return openai.OpenAI(http_client=http_client, **kwargs)


def reported_headers(headers: httpx2.Headers) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        name = name.lower()
        if name.startswith("x-ratelimit-") or name in REPORTED_HEADERS:
            out[name] = value
    return out


def error_json(err: openai.APIStatusError) -> dict[str, Any]:
    return {
        "class": type(err).__name__,
        "status_code": err.status_code,
        "code": err.code,
        "type": err.type,
        "message": err.message,
        "request_id": err.request_id,
        "headers": reported_headers(err.response.headers),
    }


def chat_usage(u: Any) -> dict[str, Any] | None:
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cached_tokens": u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None,
        "reasoning_tokens": u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else None,
    }


def chat_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "model": args.get("model", DEFAULT_MODEL),
        "messages": [{"role": "user", "content": args.get("message", "hello")}],
    }
    if args.get("extra_headers"):
        kw["extra_headers"] = args["extra_headers"]
    return kw


def client_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if "max_retries" in args:
        kw["max_retries"] = args["max_retries"]
    if "api_key" in args:
        kw["api_key"] = args["api_key"]
    return kw


def completion_json(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "model": c.model,
        "content": c.choices[0].message.content if c.choices else None,
        "finish_reason": c.choices[0].finish_reason if c.choices else None,
        "usage": chat_usage(c.usage),
        "request_id": c._request_id,
    }


def scenario_chat(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat completion."""
    c = rec.client(**client_kwargs(args)).chat.completions.create(**chat_kwargs(args))
    return completion_json(c)


def scenario_chat_stream(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """A streamed chat completion; "include_usage" asks for the usage chunk.

    Every chunk is reported by its shape: how many choices it has, its
    content delta, finish reason and whether it carries usage.
    """
    kw = chat_kwargs(args)
    if args.get("include_usage"):
        kw["stream_options"] = {"include_usage": True}
    stream = rec.client(**client_kwargs(args)).chat.completions.create(stream=True, **kw)
    chunks, content, usage = [], [], None
    with stream:
        for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            chunks.append(
                {
                    "choices": len(chunk.choices),
                    "content": delta,
                    "finish_reason": chunk.choices[0].finish_reason if chunk.choices else None,
                    "has_usage": chunk.usage is not None,
                }
            )
            if delta:
                content.append(delta)
            if chunk.usage is not None:
                usage = chat_usage(chunk.usage)
        headers = reported_headers(stream.response.headers)
    return {
        "content": "".join(content),
        "chunks": chunks,
        "usage": usage,
        "headers": headers,
        "request_id": headers.get("x-request-id"),
    }


def scenario_raw_headers(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """A chat completion through with_raw_response: the response headers as
    the SDK's httpx2 saw them (content-encoding included: httpx2 decodes the
    body but keeps the header)."""
    raw = rec.client(**client_kwargs(args)).chat.completions.with_raw_response.create(**chat_kwargs(args))
    out = completion_json(raw.parse())
    out.update(
        {
            "status_code": raw.status_code,
            "headers": reported_headers(raw.headers),
            "retries_taken": raw.retries_taken,
        }
    )
    return out


def scenario_retry_429(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """A chat completion that the upstream first refuses (the caller passes
    x-fake-fail in "extra_headers"); the SDK retries, max_retries default 2."""
    kw = client_kwargs(args)
    kw.setdefault("max_retries", 2)
    raw = rec.client(**kw).chat.completions.with_raw_response.create(**chat_kwargs(args))
    out = completion_json(raw.parse())
    out.update({"status_code": raw.status_code, "retries_taken": raw.retries_taken})
    return out


def scenario_errors(_: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """Runs each of "cases" (name → {api_key, model, message, extra_headers,
    max_retries}) as a chat completion with a client of its own and reports
    the exception class, status, code and attempts of each."""
    cases = {}
    for name, case in args.get("cases", {}).items():
        rec = Recorder()
        try:
            c = rec.client(**client_kwargs(case)).chat.completions.create(**chat_kwargs(case))
            result: dict[str, Any] = {"error": None, "content": completion_json(c)["content"]}
        except openai.APIStatusError as err:
            result = {"error": error_json(err)}
        result["attempts"] = rec.attempts
        cases[name] = result
    return {"cases": cases}


def scenario_embeddings(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """Embeddings with the SDK's default encoding_format (it asks for base64
    and decodes it to floats itself)."""
    kw: dict[str, Any] = {"model": args.get("model", EMBEDDING_MODEL), "input": args.get("input", "hello")}
    if args.get("extra_headers"):
        kw["extra_headers"] = args["extra_headers"]
    raw = rec.client(**client_kwargs(args)).embeddings.with_raw_response.create(**kw)
    parsed = raw.parse()
    wire = raw.http_response.json()
    return {
        "model": parsed.model,
        "wire_embedding_types": [type(d.get("embedding")).__name__ for d in wire.get("data", [])],
        "embeddings": [list(d.embedding) for d in parsed.data],
        "usage": {"prompt_tokens": parsed.usage.prompt_tokens, "total_tokens": parsed.usage.total_tokens},
        "headers": reported_headers(raw.headers),
        "request_id": parsed._request_id,
    }


def scenario_responses(rec: Recorder, args: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed Responses API call."""
    kw: dict[str, Any] = {"model": args.get("model", DEFAULT_MODEL), "input": args.get("input", "hello")}
    if args.get("extra_headers"):
        kw["extra_headers"] = args["extra_headers"]
    r = rec.client(**client_kwargs(args)).responses.create(**kw)
    u = r.usage
    return {
        "id": r.id,
        "model": r.model,
        "status": r.status,
        "content": r.output_text,
        "usage": None
        if u is None
        else {
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.total_tokens,
            "cached_tokens": u.input_tokens_details.cached_tokens if u.input_tokens_details else None,
            "reasoning_tokens": u.output_tokens_details.reasoning_tokens if u.output_tokens_details else None,
        },
        "request_id": r._request_id,
    }


SCENARIOS: dict[str, Callable[[Recorder, dict[str, Any]], dict[str, Any]]] = {
    "chat": scenario_chat,
    "chat_stream": scenario_chat_stream,
    "raw_headers": scenario_raw_headers,
    "retry_429": scenario_retry_429,
    "errors": scenario_errors,
    "embeddings": scenario_embeddings,
    "responses": scenario_responses,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in SCENARIOS:
        print(f"usage: {argv[0]} {{{','.join(SCENARIOS)}}} [ARGS_JSON]", file=sys.stderr)
        return 2
    args = json.loads(argv[2] if len(argv) > 2 else os.environ.get("CLIENT_ARGS", "{}"))
    rec = Recorder()
    out: dict[str, Any] = {"scenario": argv[1], "sdk_version": openai.__version__, "error": None}
    try:
        out.update(SCENARIOS[argv[1]](rec, args))
    except openai.APIStatusError as err:
        out["error"] = error_json(err)
    out.setdefault("attempts", rec.attempts)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
