"""The synthetic policy-shift world: a seeded generator of prompts and responses, its
policies (old and shifted, as packaged YAML files), a ground-truth judge, data export in the
ordinary file formats, and a tiny model bootstrapped to follow the old policy.

* :mod:`realign.synth.topics`    sensitive categories, their topics and request contexts;
* :mod:`realign.synth.templates` response styles, request, context and response templates;
* :mod:`realign.synth.benign`    benign tasks with checkable answers;
* :mod:`realign.synth.world`     the world for one seed: held-out splits, prompts, responses;
* :mod:`realign.synth.policies`  ``synth-old`` and the shifts;
* :mod:`realign.synth.judge`     ground truth: style, compliance, degenerate output;
* :mod:`realign.synth.export`    old pairs, eval prompts, truth triage, label noise, export;
* :mod:`realign.synth.bootstrap` tokenizer + tiny Llama: SFT then DPO to the old policy;
* :mod:`realign.synth.evaluate`  greedy generation and per-slice agreement;
* :mod:`realign.synth.cli`       ``realign synth export | bootstrap | noise``.
"""

from __future__ import annotations

from .bootstrap import BootstrapConfig, BootstrapResult, bootstrap, cache_path
from .export import SynthConfig, eval_prompts, benign_eval, export, flip_noise, make_pairs, swap_noise, triage_counts, truth_triage
from .judge import Judgement, TruthJudge, benign_correct, is_degenerate, response_style, truth_judge
from .policies import OLD, POLICY_NAMES, SHIFTS, load_policies, load_policy, policy_path
from .templates import STYLES
from .world import World

__all__ = [
    "BootstrapConfig", "BootstrapResult", "bootstrap", "cache_path",
    "OLD", "POLICY_NAMES", "SHIFTS", "STYLES", "Judgement", "SynthConfig", "TruthJudge", "World",
    "benign_correct", "benign_eval", "eval_prompts", "export", "flip_noise", "is_degenerate", "load_policies",
    "load_policy", "make_pairs", "policy_path", "response_style", "swap_noise", "triage_counts", "truth_judge",
    "truth_triage",
]
