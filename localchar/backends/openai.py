"""OpenAI-compatible server engine (vLLM, llama.cpp server, LM Studio, Ollama...): `/v1/chat/completions`
(the server applies the model's chat template) or `/v1/completions` (we render the prompt with the
local model's own template, which is what a prefill such as the teacher's `<think>` needs).

Requests run concurrently up to a limit; connection errors, timeouts, 429 and 5xx are retried with
backoff; any other HTTP error stops with the server's own message. A server serves named models,
not our adapter directories: a persona adapter is served as its own model and named with `model`.
The API key, when the server wants one, is `api_key` or else $OPENAI_API_KEY. Standard library
only (urllib), so this engine needs no extra install.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import LocalcharError
from ..store import derive_seed

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIEngine:
    name = "openai"

    def __init__(self, model_path: str | Path | None = None, adapter=None, strength: float = 1.0,
                 revision: str | None = None, base_url: str = "http://127.0.0.1:8000/v1", model: str | None = None,
                 api: str = "chat", api_key: str | None = None, timeout: float = 300.0, retries: int = 3,
                 concurrency: int = 4, backoff: float = 1.0):
        if api not in ("chat", "completions"):
            raise LocalcharError(f"openai engine: api must be 'chat' or 'completions', got '{api}'")
        if adapter or strength != 1.0:
            raise LocalcharError("openai engine: a server serves named models, not adapter directories; serve the "
                                 "persona model on the server and give its name as the model")
        self.base_url = base_url.rstrip("/")
        self.api, self.timeout = api, timeout
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.retries, self.concurrency, self.backoff = retries, max(1, concurrency), backoff
        self.model = model or self._first_model()
        self.model_path = str(model_path or self.model)
        self._tokenizer = None
        if api == "completions":
            if not model_path:
                raise LocalcharError("openai engine: api 'completions' renders prompts locally and needs the model "
                                     "directory (or hub id) whose chat template the server's model uses")
            from transformers import AutoTokenizer

            from ..hub import resolve_model

            self._tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(str(model_path), revision)))
        self.adapter = None
        self.last_usage: list[tuple[int, int]] = []

    supports_tools = True  # the server's template decides; a template without tools ignores them

    def _request(self, path: str, body: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                if e.code not in RETRY_STATUS:
                    raise LocalcharError(f"{url}: HTTP {e.code}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except json.JSONDecodeError as e:
                raise LocalcharError(f"{url}: the server's reply is not JSON ({e})") from None
        raise LocalcharError(f"{url}: no answer after {self.retries + 1} tries ({last})")

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise LocalcharError(f"{self.base_url}/models: the server lists no model; name one")
        return models[0]["id"]

    def render(self, messages: list[dict], prefill: str = "", tools: list | None = None) -> str:
        kw = {"tools": tools} if tools else {}
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kw)
        bos = self._tokenizer.bos_token
        if bos and text.startswith(bos):  # servers add the BOS token to a completion prompt themselves
            text = text[len(bos):]
        return text + prefill

    def _one(self, chat, prefill, sampling, seed, tools) -> tuple[str, tuple[int, int]]:
        common = {"model": self.model, "max_tokens": sampling.max_tokens, "temperature": sampling.temperature,
                  "top_p": sampling.top_p if sampling.temperature else 1.0, "seed": seed}
        rp = getattr(sampling, "repetition_penalty", 1.0)
        # not in OpenAI's API: llama.cpp's server spells it repeat_penalty (default 1.1), vLLM repetition_penalty
        common.update(repeat_penalty=rp, repetition_penalty=rp)
        if self.api == "chat":
            if prefill:
                raise LocalcharError("openai engine: a prefill (e.g. the teacher's <think>) needs api = 'completions'")
            r = self._request("/chat/completions", {**common, "messages": chat, **({"tools": tools} if tools else {})})
            choice = r["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            calls = (choice.get("message") or {}).get("tool_calls") or []
            for c in calls:  # a server that parses tool calls itself: hand them back in our tagged form
                f = c.get("function") or {}
                args = f.get("arguments") or "{}"
                args = args if isinstance(args, str) else json.dumps(args)
                text += f'\n<tool_call>{{"name": {json.dumps(f.get("name"))}, "arguments": {args}}}</tool_call>'
        else:
            r = self._request("/completions", {**common, "prompt": self.render(chat, prefill, tools)})
            text = r["choices"][0].get("text") or ""
        u = r.get("usage") or {}
        return text, (u.get("prompt_tokens", 0), u.get("completion_tokens", 0))

    def generate(self, chats: list[list[dict]], sampling, seed: int, prefills: list[str] | None = None,
                 adapters: list | None = None, tools: list | None = None) -> list[str]:
        if adapters and any(adapters):
            raise LocalcharError("openai engine: rows ask for persona adapters; serve each persona as its own "
                                 "model, or generate with the mlx or llama_cpp engine")
        jobs = [(c, prefills[i] if prefills else "", sampling, derive_seed(seed, i), tools) for i, c in enumerate(chats)]
        with ThreadPoolExecutor(self.concurrency) as pool:
            done = list(pool.map(lambda j: self._one(*j), jobs))
        self.last_usage = [u for _, u in done]
        return [t for t, _ in done]
