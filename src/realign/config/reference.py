"""The configuration reference (``docs/configuration.md``), generated from the pydantic models
of :mod:`realign.config` and :mod:`realign.runs.pipeline` so that it cannot drift from the code:
``python -m realign.config.reference > docs/configuration.md`` (a test checks it is current)."""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from . import (CorrectiveConfig, EvalConfig, GeneratorConfig, JudgeAuditConfig, JudgeConfig, LoraConfigModel,
                     OracleConfig, ParamSpaceConfig, SamplingConfig, ScoreConfig, TrainConfig, TriageConfig)
from ..runs.pipeline import RunConfig

HEADER = """# Configuration reference

Every option of a stage can be set in a YAML file (`--config FILE`), the common ones also as
command-line flags (`realign STAGE --help` lists them; flags override the file); `realign run CONFIG.yaml` takes the whole pipeline in one file, with
one section per stage. Each run writes its resolved configuration beside its outputs.

Paths in a config file are taken from the file's folder: a relative output path (`out`, `cache`,
`gold_out`, `naive_out`) always; a relative input path (`data`, `gold_data`, `model`, `adapter`,
`reference`, `policy`, `old_policy`, `prompts`, `attacks`, `attack_templates`, `text`, `api_key_file`)
when it exists there, otherwise it is read as written (a hub id, a packaged policy name, or a path from
the working directory). `~` is the home folder. Paths given as flags are relative to the working
directory.

Generated from the code by `python -m realign.config.reference`; do not edit by hand.
"""


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is not None:
            value = field.default_factory()
            if isinstance(value, BaseModel):
                return "see below"
            return f"`{json.dumps(value)}`"
        return "**required**"
    value = field.default
    return f"`{json.dumps(value, default=str)}`"


def model_table(title: str, model: type[BaseModel], intro: str = "") -> list[str]:
    lines = [f"## {title}", ""]
    doc = (model.__doc__ or "").strip()
    if intro or doc:
        lines += [intro or doc, ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return lines + [""]


def reference() -> str:
    sections = [
        ("`realign run` (whole pipeline)", RunConfig, ""),
        ("`realign triage`", TriageConfig, ""),
        ("Judge (`judge:` in triage, eval and run; `--judge FILE.yaml`)", JudgeConfig, ""),
        ("Oracle (`oracle:` in triage)", OracleConfig, ""),
        ("Corrective responses (`corrective:` in triage)", CorrectiveConfig, ""),
        ("`realign score`", ScoreConfig, ""),
        ("Parameter space (`params:` in score)", ParamSpaceConfig, ""),
        ("`realign train`", TrainConfig, ""),
        ("LoRA (`lora:` in train)", LoraConfigModel, ""),
        ("Sampling (`sampling:` in train; self-distill and online-dpo)", SamplingConfig, ""),
        ("`realign eval`", EvalConfig, ""),
        ("Generator (`generator:` in eval; in run's `eval:` section `{name}` in `model` is each evaluation's name)",
         GeneratorConfig, ""),
        ("`realign judge audit`", JudgeAuditConfig, ""),
    ]
    lines = [HEADER]
    for title, model, intro in sections:
        lines += model_table(title, model, intro)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
