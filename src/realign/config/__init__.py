"""Typed, validated configuration. YAML in; the resolved config is written beside every
stage's outputs. Every field carries its help text (shown by ``realign ... --help`` and in
the resolved YAML's schema)."""

from .audit import JudgeAuditConfig
from .base import StrictModel, default_cache_dir
from .endpoints import EndpointConfig, GeneratorConfig, JudgeConfig, OracleConfig, UnparseableRule
from .evaluate import EvalConfig
from .files import config_paths, load_yaml, resolved
from .score import ParamSpaceConfig, ScoreConfig
from .train import LoraConfigModel, SamplingConfig, TrainConfig
from .triage import CorrectiveConfig, TriageConfig

__all__ = ["CorrectiveConfig", "EndpointConfig", "EvalConfig", "GeneratorConfig", "JudgeAuditConfig", "JudgeConfig",
           "LoraConfigModel", "OracleConfig", "ParamSpaceConfig", "SamplingConfig", "ScoreConfig", "StrictModel",
           "TrainConfig", "TriageConfig", "UnparseableRule", "config_paths", "default_cache_dir", "load_yaml",
           "resolved"]
