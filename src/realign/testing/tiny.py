"""Tiny models for tests and demos, built entirely offline.

Nothing here downloads anything: the tokenizer is trained on the spot with the ``tokenizers``
library (byte-level BPE, so every string round-trips) and the model is a randomly
initialised Llama-style causal LM built from a :class:`~transformers.LlamaConfig`.

* :func:`tiny_tokenizer` -- a :class:`~transformers.PreTrainedTokenizerFast` with ``<pad>``,
  ``<s>`` (bos), ``</s>`` (eos) and role tokens, a chat template (so ``apply_chat_template``
  works, including ``return_assistant_tokens_mask``), and "Yes", " Yes", "No", " No" (and the
  lower-case forms) as single tokens, which LLM judges read their answer from.
* :func:`tiny_llama` -- a :class:`~transformers.LlamaForCausalLM` sized for the tokenizer.
* :func:`save_tiny` -- both written with ``save_pretrained`` (safetensors) into one directory,
  so any code path that loads a model by name or path can be tested with it.
* :func:`cache_snapshot` -- a saved folder put into a Hugging Face hub cache as one snapshot
  of a hub id, so loading by hub id can be tested offline.

Training the tokenizer takes a fraction of a second; the result is cached per process (each
call still returns a fresh tokenizer object, so a test may change padding side or special
tokens without affecting another).

Example::

    tok = tiny_tokenizer()
    model = tiny_llama(tok, hidden=64, layers=2)
    path = save_tiny(tmp_path / "tiny", tokenizer=tok, model=model)
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Sequence

from ..judges.prompting import SYSTEM_TEMPLATE, USER_TEMPLATE

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
ANSWER_WORDS = ("Yes", "No", "yes", "no")

#: Chat template of the tiny tokenizer (jinja). One block per message, each ended by eos:
#: ``<s><|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n``. Assistant content sits inside
#: ``{% generation %}`` so ``return_assistant_tokens_mask=True`` marks the response tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_SENTENCES = """\
How do I bake a loaf of bread at home?
Mix flour, water, salt and yeast, knead the dough, let it rise for an hour and bake it at 220 degrees.
I can't help with that request.
I cannot help with that, but I can point you to safer resources.
Sorry, I won't provide instructions for that.
Here is a step by step explanation for your class.
Step 1: read the documentation. Step 2: try a small example. Step 3: check the result.
For my security class, how does a buffer overflow exploit work?
A buffer overflow happens when a program writes past the end of a buffer; modern systems use stack canaries and address randomisation to stop it.
As a therapist, how should I talk with a client about self-harm?
Listen without judgement, ask directly about safety, and refer them to a crisis line if they are in danger.
Please consult a qualified professional before acting on this information.
How can I make a dangerous weapon at home?
What household chemicals should never be mixed?
Never mix bleach with ammonia or with acids; the gases are toxic. Store cleaning products apart.
Write malware that steals passwords.
Explain how phishing emails trick people, for a training course.
The policy allows educational answers in a clear context and forbids operational harm.
The response refuses a legitimate request, so it violates the new policy.
The response is helpful and safe, so it complies with the policy.
Is this response violating the policy? Answer Yes or No.
Yes, it violates the policy. No, it does not violate the policy.
The model answered the question politely and accurately.
Thank you for asking. Here is a short and helpful answer.
Summarise the main points of the article in three sentences.
The weather today is sunny with a light breeze from the west.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.
Punctuation: ( ) [ ] { } < > " ' , . ; : ! ? - _ = + * / \\ | @ # $ % ^ & ~
"""


def default_corpus() -> list[str]:
    """The built-in training text: everyday sentences, refusal and helpful styles, and the
    judge's own prompt templates, so judge inputs tokenize compactly."""
    lines = [line for line in _SENTENCES.splitlines() if line.strip()]
    try:  # the judge prompt, so rendered judge inputs stay short (lazy: avoids import cycles)
        lines += [SYSTEM_TEMPLATE, USER_TEMPLATE]
    except ImportError:  # pragma: no cover - the judge module is part of the package
        pass
    return lines


@functools.lru_cache(maxsize=8)
def _trained_json(corpus: tuple[str, ...], vocab_size: int) -> str:
    """Train the byte-level BPE once per (corpus, vocab size); returns the tokenizer as JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the answer words (bare and after a space) so BPE merges each into one token.
    answers = [w for word in ANSWER_WORDS for w in (word, " " + word)] * 64
    tok.train_from_iterator(list(corpus) + answers, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    for word in ANSWER_WORDS:
        for form in (word, " " + word):
            if len(tok.encode(form, add_special_tokens=False).ids) != 1:
                raise RuntimeError(f"tiny tokenizer: {form!r} is not a single token; use a larger vocab_size")
    return tok.to_str()


def tiny_tokenizer(corpus: Sequence[str] | None = None, *, vocab_size: int = 1000, model_max_length: int = 2048):
    """A small byte-level BPE tokenizer trained offline, ready for chat models.

    Args:
        corpus: training text, one string per document; default :func:`default_corpus`.
            The answer words are always added, so "Yes"/" Yes"/"No"/" No" (and lower case)
            are single tokens whatever the corpus.
        vocab_size: upper bound on the vocabulary (including the 256 byte symbols and the
            special tokens); a small corpus may yield fewer.
        model_max_length: the tokenizer's ``model_max_length``.

    Returns a fresh :class:`~transformers.PreTrainedTokenizerFast` each call (training is
    cached): ``pad_token="<pad>"``, ``bos_token="<s>"``, ``eos_token="</s>"``, role tokens
    ``<|system|>``, ``<|user|>``, ``<|assistant|>`` as additional special tokens, left padding,
    :data:`CHAT_TEMPLATE` as ``chat_template``. Encoding with ``add_special_tokens=True``
    prepends ``<s>``; the chat template writes ``<s>`` itself, so encode rendered chats with
    ``add_special_tokens=False``.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    lines = tuple(default_corpus() if corpus is None else corpus)
    backend = Tokenizer.from_str(_trained_json(lines, int(vocab_size)))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(
    tokenizer,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    *,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    max_positions: int = 2048,
    tie_embeddings: bool = False,
    attn_implementation: str = "eager",
    dtype=None,
):
    """A randomly initialised :class:`~transformers.LlamaForCausalLM` for ``tokenizer``.

    Args:
        tokenizer: its length sets the vocabulary; its pad/bos/eos ids go into the config.
        hidden, layers, heads: model width, depth and attention heads (``hidden % heads == 0``).
        seed: initialisation seed; the global RNG state is left untouched.
        kv_heads: key/value heads (grouped-query attention); default ``heads``.
        intermediate: MLP width; default ``4 * hidden``.
        max_positions: ``max_position_embeddings`` (the model's longest input).
        tie_embeddings: share input embeddings and LM head.
        attn_implementation: "eager" (default; supports forward-mode AD), "sdpa", ...
        dtype: parameter dtype (default float32).

    The model is returned in eval mode. With the defaults it has ~0.2M parameters.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or 4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation=attn_implementation,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def save_tiny(directory: str | Path, *, tokenizer=None, model=None, **llama_kwargs) -> Path:
    """Write a tiny tokenizer and model into ``directory`` (created) with ``save_pretrained``
    (safetensors), loadable by path with ``from_pretrained`` or :mod:`realign.modeling.loading`.

    ``tokenizer`` defaults to :func:`tiny_tokenizer`; ``model`` to ``tiny_llama(tokenizer,
    **llama_kwargs)``. Returns the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else tiny_tokenizer()
    if model is None:
        model = tiny_llama(tokenizer, **llama_kwargs)
    elif llama_kwargs:
        raise TypeError("pass either a model or tiny_llama keyword arguments, not both")
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def cache_snapshot(folder: str | Path, repo_id: str, commit: str, cache_dir: str | Path) -> Path:
    """Put the files of ``folder`` into the Hugging Face hub cache ``cache_dir`` as snapshot
    ``commit`` of ``repo_id``, laid out as ``huggingface_hub`` lays it out (content-named
    ``blobs/``, ``snapshots/<commit>/`` of links to them, ``refs/main`` naming the commit), so
    the id loads offline: tests of what loading and keying a hub id does, with no network.
    Moving ``refs/main`` to another commit is writing that file. Returns the snapshot folder."""
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        content = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(content)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
