"""Any OpenAI-compatible chat endpoint: a vLLM or SGLang server, TGI, llama.cpp's server, `transformers
serve`, or a hosted API.

Requests run concurrently (bounded by `concurrency`), each with its own seed. The openai SDK does the
retrying: connection errors, timeouts, 408/409/429 and 5xx are retried `max_retries` times with
exponential backoff before an error reaches us. The API key is read from the environment variable named
in the config and is never written anywhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from humback.config import ConfigError, is_loopback, redact_url
from humback.generation.base import (
    TOP_LOGPROBS,
    GenerationError,
    SamplingParams,
    UnsupportedRequest,
    request_seeds,
)
from humback.generation.meter import Usage


def _describe(err: Exception) -> str:
    import openai

    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {err.message}"
    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    if isinstance(err, openai.APIConnectionError):
        return "cannot connect (is the server running?)"
    return f"{type(err).__name__}: {err}"


def choice_probs(top: list[tuple[str, float]], choices: list[str]) -> dict[str, float]:
    """From a server's top log-probabilities (token text, logprob) for one position, the probability of
    each choice renormalised over the choices. Token texts are compared without surrounding spaces, and
    variants of one choice (' 4', '4') are summed. Empty when no choice is among the top tokens."""
    import math

    mass = dict.fromkeys(choices, 0.0)
    wanted = {c.strip(): c for c in choices}
    for token, logprob in top:
        if token.strip() in wanted:
            mass[wanted[token.strip()]] += math.exp(logprob)
    total = sum(mass.values())
    return {c: m / total for c, m in mass.items()} if total > 0 else {}


DEFAULT_ENDPOINT = "https://api.openai.com/v1"  # the openai SDK's own default


def _origin(url: str) -> tuple[str, str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (
        parts.scheme,
        (parts.hostname or "").lower(),
        parts.port or (443 if parts.scheme == "https" else 80),
    )


def api_key_for(base_url: str | None, api_key_env: str) -> str | None:
    """The key to send to `base_url`, or None for a local server that gets none.

    A key goes only where its owner paired it, never where a shared recipe points it: to the endpoint in
    the variable `<PREFIX>_BASE_URL` beside `<PREFIX>_API_KEY` (the pairing the openai SDK itself reads,
    OPENAI_API_KEY with OPENAI_BASE_URL), or, for OPENAI_API_KEY with no pairing, to OpenAI's endpoint."""
    key = os.environ.get(api_key_env)
    target = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_ENDPOINT
    paired = os.environ.get(api_key_env.removesuffix("_API_KEY") + "_BASE_URL")
    if paired:
        allowed = _origin(paired) == _origin(target)
    else:
        allowed = api_key_env == "OPENAI_API_KEY" and _origin(target) == _origin(DEFAULT_ENDPOINT)
    if key and allowed:
        return key
    if is_loopback(target):
        return None  # a local server: it takes any key, and gets none of the user's
    prefix = api_key_env.removesuffix("_API_KEY")
    if not key:
        raise ConfigError(
            f"the openai backend needs an API key for {redact_url(target)} in the environment variable "
            f"{api_key_env} (paired with it by {prefix}_BASE_URL={redact_url(target)})"
        )
    raise ConfigError(
        f"{api_key_env} is not paired with {redact_url(target)}, so it is not sent there: if that "
        f"server should get this key, set {prefix}_BASE_URL={redact_url(target)} in your environment "
        "(a recipe alone cannot send a key to a server of its choosing)"
    )


class OpenAIGenerator:
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 5,
    ):
        import openai  # noqa: F401  (fail here, not mid-stage, if the SDK is missing)

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_ENDPOINT
        self._key = api_key_for(base_url, api_key_env)  # checked now, not mid-stage
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.chunk_size = concurrency * 4
        self.fingerprint = f"openai:{redact_url(self.base_url)}:{model}"
        self.usage = Usage()  # the server's own token counts, what it bills (generation/meter.py reads it)

    def _client(self):
        import openai

        # Local servers take any key; the SDK insists on one being set.
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._key or "not-needed",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def _run(self, calls: list[dict], read) -> list:
        """Send `calls` (chat.completions.create keyword arguments) concurrently; `read` turns a response
        into a result. On the first failure the rest are cancelled and GenerationError carries the
        results that did arrive."""

        async def main():
            done: dict[int, object] = {}
            gate = asyncio.Semaphore(self.concurrency)
            async with self._client() as client:
                endpoint = redact_url(str(client.base_url).rstrip("/"))

                async def one(i: int, kwargs: dict):
                    async with gate:
                        resp = await client.chat.completions.create(model=self.model, **kwargs)
                        self._count(resp)
                        done[i] = read(resp)

                tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(calls)]
                try:
                    await asyncio.gather(*tasks)
                except Exception as e:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    if isinstance(e, UnsupportedRequest):
                        raise UnsupportedRequest(f"{endpoint}: {e}") from None
                    if isinstance(e, GenerationError):
                        raise GenerationError(f"{endpoint}: {e}", dict(done)) from None  # type: ignore[arg-type]
                    raise GenerationError(
                        f"generation request to {endpoint} (model '{self.model}') failed after"
                        f" {self.max_retries} retries: {_describe(e)}",
                        dict(done),  # type: ignore[arg-type]
                        getattr(e, "status_code", None),
                    ) from e
            return [done[i] for i in range(len(calls))]

        return asyncio.run(main())

    def _count(self, resp) -> None:
        used = getattr(resp, "usage", None)
        if used is not None and getattr(used, "prompt_tokens", None) is not None:
            self.usage += Usage(1, int(used.prompt_tokens), int(used.completion_tokens or 0))
        else:
            self.usage += Usage(1, estimated=1)

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        seeds = request_seeds(params, seeds, len(prompts))
        temperature, top_p = params.effective()
        calls = [
            {
                "messages": p,
                "temperature": temperature,
                "top_p": top_p,
                "max_tokens": params.max_new_tokens,
                "seed": s,
                # A final assistant message is the reply begun (templates.render_prompt): the server
                # continues it, as vLLM's and SGLang's `continue_final_message` do.
                **(
                    {"extra_body": {"continue_final_message": True, "add_generation_prompt": False}}
                    if p and p[-1]["role"] == "assistant"
                    else {}
                ),
            }
            for p, s in zip(prompts, seeds)
        ]

        def read(resp) -> str:
            # Model output is untrusted: a reply may come back with no choices or no content.
            return ((resp.choices[0].message.content if resp.choices else None) or "").strip()

        return self._run(calls, read)

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        # The assistant's reply so far goes in as a final assistant message that the server continues
        # (vLLM's and SGLang's `continue_final_message`); one token, with the top log-probabilities.
        calls = [
            {
                "messages": p + [{"role": "assistant", "content": c}],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": TOP_LOGPROBS,
                "extra_body": {"continue_final_message": True, "add_generation_prompt": False},
            }
            for p, c in zip(prompts, continuations)
        ]

        def read(resp) -> dict[str, float]:
            content = resp.choices[0].logprobs.content if resp.choices and resp.choices[0].logprobs else None
            if not content:
                raise UnsupportedRequest(
                    "the server returned no log-probabilities: use the 'sample' method"
                    " (curate.method, eval.pairwise_method) with this endpoint"
                )
            return choice_probs([(t.token, t.logprob) for t in content[0].top_logprobs], choices)

        try:
            return self._run(calls, read)
        except GenerationError as e:
            if e.status is not None and 400 <= e.status < 500:  # e.g. transformers serve rejects `logprobs`
                raise UnsupportedRequest(
                    f"{e} — this endpoint does not give log-probabilities, which the"
                    " 'expected' method needs: use the 'sample' method (curate.method, eval.pairwise_method)"
                ) from None
            raise

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        # The chat API returns log-probabilities of generated tokens only, not of text sent in; scoring a
        # given reply needs the model itself (or a server's non-standard prompt_logprobs).
        raise UnsupportedRequest(
            f"the openai backend cannot score given replies (IFD, reference NLL): the chat API"
            f" has no log-probabilities for input text. Use a local backend (transformers,"
            f" ctranslate2, vllm) for {self.model}, or set curate.ifd: false"
        )
