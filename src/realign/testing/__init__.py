"""Helpers for tests and benchmarks (importable by users writing their own tests)."""

from __future__ import annotations

from ..policy import resolve_policy
from pathlib import Path

import yaml

from .openai_server import FAULTS, FakeOpenAIServer, extract_response

__all__ = ["FAULTS", "FakeOpenAIServer", "extract_response", "policy_without_cases"]


def policy_without_cases(name_or_path: str, folder) -> "Path":
    """A copy of a policy (file or packaged name) in ``folder`` with its test cases left out, for
    tests whose fake judge decides by a marker rather than by the policy (it would fail the
    cases, and triage's pre-flight would stop). Same name, text and rules, so the same hash."""
    source = resolve_policy(name_or_path)
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    raw.pop("cases", None)
    out = Path(folder) / f"{source.stem}_no_cases.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out
