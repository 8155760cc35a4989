"""Helpers for tests and benchmarks (importable by users writing their own tests)."""

from __future__ import annotations

from .openai_server import FAULTS, FakeOpenAIServer, extract_response

__all__ = ["FAULTS", "FakeOpenAIServer", "extract_response"]
