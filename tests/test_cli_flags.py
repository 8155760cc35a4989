"""Flags and config fields share one source: every stage flag named like a field of the stage's
config model (or of the judge / parameter-space model) carries that field's description."""

import pytest
import typer.main

from realign.cli import app
from realign.config import EvalConfig, JudgeConfig, ParamSpaceConfig, ScoreConfig, TrainConfig, TriageConfig

STAGES = {"triage": TriageConfig, "score": ScoreConfig, "train": TrainConfig, "eval": EvalConfig}
RENAMED = {"judge_model": (JudgeConfig, "model"), "params": (ParamSpaceConfig, "kind")}
OWN = {"config", "quiet", "judge", "exact", "oracle", "oracle_model", "lm_eval", "policy", "skip_invalid", "baseline"}
NESTED = {"triage": {"model": JudgeConfig, "base_url": JudgeConfig, "concurrency": JudgeConfig, "on_unparseable": JudgeConfig},
          "score": {"modules": ParamSpaceConfig, "last_k_blocks": ParamSpaceConfig},
          "eval": {"base_url": JudgeConfig}}


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_flags_carry_their_fields_description_and_default(stage):
    command = typer.main.get_command(app).commands[stage]
    checked = 0
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option" or param.name in OWN:
            continue
        model, field = RENAMED.get(param.name) or (NESTED.get(stage, {}).get(param.name, STAGES[stage]), param.name)
        info = model.model_fields[field]
        assert param.help.startswith(info.description), (stage, param.name)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if default not in (None, "", [], {}) and not hasattr(default, "model_fields"):
            assert param.help.endswith(f"[default: {default}]"), (stage, param.name)
        checked += 1
    assert checked >= 8
