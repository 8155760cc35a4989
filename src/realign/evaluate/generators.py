"""Where evaluation responses come from, behind one interface: ``generator(prompts) -> texts``.

* :class:`LocalGenerator` — Hugging Face ``generate`` on the loaded model (+ adapter). Under
  ``accelerate launch --num_processes N`` the prompts are dealt round robin to the processes,
  each generates its share, and the main process gathers them: the responses are the same as
  one process's (greedy decoding; each prompt is generated in a batch of the same prompts).
* :class:`ServerGenerator` — an OpenAI-compatible chat endpoint serving the model (vLLM with the
  trained LoRA adapter, a hosted model, ...), through the judges' client: bounded concurrency,
  retries with backoff on 429/5xx/timeouts, the API key from the environment only.

Both cache every response in the verdict cache (SQLite) as soon as it exists, keyed by an
identity that names what generated it (model fingerprint, or served name, endpoint and the
digests of what it serves; adapter; decoding settings): a killed evaluation resumes where it stopped, and a rerun generates nothing.
"""

from __future__ import annotations

from typing import Sequence

from ..data import Text, prompt_text
from ..modeling.generation import generate, prompt_ids, prompt_room
from ..judges.async_calls import fan_out_sync
from ..judges.chat_client import ChatClient
from ..modeling.sequences import prompt_messages

COMMIT_EVERY = 32
"""Responses written to the cache between commits (a kill loses at most these)."""


def decoding(config) -> str:
    """The decoding settings that change a response (part of every generator identity)."""
    return f"{config.max_new_tokens}/{config.temperature}/{config.seed}"


class LocalGenerator:
    """Cached generation with the model loaded here. The prompts still to generate are sorted
    by token length and cut into batches once, in a fixed order; under ``accelerate launch``
    the batches are dealt round robin to the processes and gathered on the main one. Every
    prompt is therefore generated in the same batch whatever the number of processes, so
    greedy responses do not depend on it. Only the main process writes the cache."""

    def __init__(self, model, tokenizer, identity: str, config, cache, progress: bool) -> None:
        self.model, self.tokenizer, self.identity = model, tokenizer, identity
        self.config, self.cache, self.progress = config, cache, progress

    def _batches(self, prompts: Sequence[Text], todo: list[int]) -> list[list[int]]:
        room = prompt_room(self.model, self.tokenizer, self.config.max_new_tokens)
        length = {i: len(prompt_ids(self.tokenizer, prompts[i], room)[0]) for i in todo}  # as generate sees them
        order = sorted(todo, key=lambda i: length[i])
        size = self.config.batch_size
        return [order[k : k + size] for k in range(0, len(order), size)]

    def __call__(self, prompts: Sequence[Text]) -> list[str]:
        import accelerate
        from tqdm.auto import tqdm

        state = accelerate.PartialState()
        keys = [prompt_text(p) for p in prompts]
        out = [self.cache.get_generation(self.identity, "", k) if self.cache is not None else None for k in keys]
        todo = [i for i, o in enumerate(out) if o is None]
        batches = self._batches(prompts, todo)
        mine = list(enumerate(batches))[state.process_index :: state.num_processes]
        texts: dict[int, str] = {}
        bar = tqdm(total=len(todo), desc="generating", unit="resp", disable=not (self.progress and todo))
        for number, batch in mine:
            made = generate(self.model, self.tokenizer, [prompts[i] for i in batch],
                            max_new_tokens=self.config.max_new_tokens, batch_size=len(batch),
                            temperature=self.config.temperature, seed=self.config.seed + number)
            texts.update(zip(batch, made))
            if state.num_processes == 1:
                self._store(batch, keys, made)
            bar.update(len(batch) * state.num_processes)
        bar.close()
        if state.num_processes > 1:
            from accelerate.utils import gather_object

            for part in gather_object([texts]):
                texts.update(part)
            if state.is_main_process:
                self._store(list(texts), keys, list(texts.values()))
        for i, text in texts.items():
            out[i] = text
        return out  # type: ignore[return-value]

    def _store(self, index: list[int], keys: list[str], texts: list[str]) -> None:
        if self.cache is None:
            return
        for i, text in zip(index, texts):
            self.cache.put_generation(self.identity, "", keys[i], text)
        self.cache.commit()


class ServerGenerator:
    """Responses from an OpenAI-compatible chat endpoint; ``served_model`` is the name the
    server knows the evaluated model by (for vLLM with ``--lora-modules NAME=PATH``: NAME), and
    ``serves`` the content identity of what that name serves, as far as it is known here (the
    model's and adapter's digests): a name stays the same when what it serves changes (a
    retrained adapter), so the identity that keys cached responses holds both.

    ``client`` replaces the HTTP client (anything with ``async chat(messages, max_tokens,
    temperature)`` returning an object with ``.text``; tests)."""

    def __init__(self, generator_config, served_model: str, config, cache, progress: bool, *, serves: str,
                 client=None) -> None:
        if client is None:
            client = ChatClient(generator_config.model_copy(update={"model": served_model}), role="generator")
        self.client, self.config, self.cache, self.progress = client, config, cache, progress
        self.concurrency = generator_config.concurrency
        endpoint = getattr(client, "endpoint_id", "endpoint")
        self.identity = f"gen/openai/{served_model}/{endpoint}/{decoding(config)}/{serves}"

    async def _one(self, prompt: Text) -> str:
        reply = await self.client.chat(
            prompt_messages(prompt), max_tokens=self.config.max_new_tokens, temperature=self.config.temperature)
        return (getattr(reply, "text", reply) or "").strip()

    def __call__(self, prompts: Sequence[Text]) -> list[str]:
        from tqdm.auto import tqdm

        keys = [prompt_text(p) for p in prompts]
        out = [self.cache.get_generation(self.identity, "", k) if self.cache is not None else None for k in keys]
        todo = [i for i, o in enumerate(out) if o is None]
        if not todo:
            return out  # type: ignore[return-value]
        # one request per distinct prompt text; fan_out asks repeated keys once
        firsts = {}
        for i in todo:
            firsts.setdefault(keys[i], i)
        asked = list(firsts)
        bar = tqdm(total=len(asked), desc="generating (server)", unit="resp", disable=not self.progress)
        written = {"n": 0}

        def on_result(j: int, text: str) -> None:
            if self.cache is not None:
                self.cache.put_generation(self.identity, "", asked[j], text)
                written["n"] += 1
                if written["n"] % COMMIT_EVERY == 0:
                    self.cache.commit()
            bar.update(1)

        try:
            texts = fan_out_sync(asked, lambda key: self._one(prompts[firsts[key]]), 4 * self.concurrency, on_result,
                                 self.client)
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.commit()
        by_key = dict(zip(asked, texts))
        for i in todo:
            out[i] = by_key[keys[i]]
        return out  # type: ignore[return-value]
