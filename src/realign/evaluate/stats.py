"""The rate statistics' old name: they are :mod:`realign.metrics.stats`, below the evaluation and
the report, which both read them. Code written against docs/extending.md's earlier "A metric"
imports these names from here."""

from ..metrics.stats import Z95, ci_of, difference, number, pool, rate, rate_of, wilson

__all__ = ["Z95", "ci_of", "difference", "number", "pool", "rate", "rate_of", "wilson"]
