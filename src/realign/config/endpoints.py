"""Connections to the models a stage asks: an OpenAI-compatible endpoint or a local Hugging
Face model (:class:`EndpointConfig`), as the judge, the oracle or the evaluation's generator.
Judge and oracle backend names are checked against :mod:`realign.judges.registry` when a config
is validated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ..judges.registry import backend_names
from .base import StrictModel

UnparseableRule = Literal["retry", "violating", "compliant", "drop"]


def _registered(role: str) -> AfterValidator:
    """A backend name checked against the table of backends (:mod:`realign.judges.registry`)
    when a config is validated, not frozen when this module is imported: a backend registered
    at run time (docs/extending.md, "A judge backend") is accepted like the built-in ones."""

    def check(name: str) -> str:
        names = backend_names(role)
        if name not in names:
            raise ValueError(f"expected {', '.join(names)} (the {role} backends of realign.judges.registry)")
        return name

    return AfterValidator(check)


#: The judge and oracle backends: names in the one table of them (:mod:`realign.judges.registry`).
JudgeBackend = Annotated[str, _registered("pointwise")]
OracleBackend = Annotated[str, _registered("oracle")]


class EndpointConfig(StrictModel):
    """Connection to an OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, ...)."""

    model: str | None = Field(None, description="Model name (openai) or hub id / local path (hf).")
    base_url: str | None = Field(None, description="Endpoint URL; default $OPENAI_BASE_URL, else OpenAI's.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    api_key_file: Path | None = Field(None, description="File holding the API key (instead of the environment).")
    concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(12, ge=0, le=100, description="Retries on 429, 5xx, timeouts and malformed bodies.")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry delay; doubles each retry, with jitter.")
    backoff_max_s: float = Field(20.0, gt=0, description="Longest delay between retries.")
    device: str = Field("auto", description="hf backend: 'auto', 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="hf backend weights dtype.")
    batch_size: int = Field(16, ge=1, description="hf backend: items per forward pass.")
    trust_remote_code: bool = Field(False, description="hf backend: run code shipped with the model (opt in).")


class JudgeConfig(EndpointConfig):
    """Which judge decides π_new(y|x) and how its failures are handled."""

    backend: JudgeBackend = Field(
        "rules", description=f"Judge backend: {', '.join(backend_names('pointwise'))}, or one registered in "
        "realign.judges.registry (docs/extending.md, \"A judge backend\").")
    logprobs: bool = Field(True, description="openai: ask for log-probs to report P(compliant).")
    on_unparseable: UnparseableRule = Field(
        "retry", description="An answer that is neither Yes nor No: ask again, or count it as given, or drop the pair."
    )
    unparseable_retries: int = Field(2, ge=0, le=20, description="Extra asks for 'retry' before the pair is dropped.")


class GeneratorConfig(EndpointConfig):
    """Where evaluation responses come from: the evaluated model itself (``hf``: Hugging Face
    ``generate`` in this process, data-parallel under ``accelerate launch``) or an
    OpenAI-compatible server serving it (``openai``: e.g. vLLM serving the base model with the
    trained LoRA adapter), with the judge's batching, retries, key handling and cache."""

    backend: Literal["hf", "openai"] = Field("hf", description="Generator backend.")
    baseline_model: str | None = Field(
        None, description="openai: the served name of the model without the adapter (for baseline: true).")


class OracleConfig(EndpointConfig):
    """A model that writes a compliant response y_c for PUNISH prompts (optional oracle; README, "The method")."""

    backend: OracleBackend = Field(
        "openai", description=f"Generator backend: {', '.join(backend_names('oracle'))}, or one registered in "
        "realign.judges.registry.")
    max_new_tokens: int = Field(256, ge=1, description="Longest response written.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")
