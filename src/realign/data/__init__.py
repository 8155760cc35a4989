"""Preference records: the record model (:mod:`.records`), validation (:mod:`.validation`),
reading sources (JSONL, JSON arrays, Hugging Face datasets; :mod:`.sources`), reading and
atomic writing of whole files (:mod:`.io`), what a triaged record means (:mod:`.triaged`) and
PKU-SafeRLHF as preference pairs (:mod:`.pku`).

Accepted formats (TRL's, https://huggingface.co/docs/trl/dataset_formats):

* standard:        ``{"prompt": str, "chosen": str, "rejected": str}``
* conversational:  ``prompt``, ``chosen`` and ``rejected`` are lists of ``{"role", "content"}``
  messages; ``prompt`` may be omitted, in which case it is the messages ``chosen`` and
  ``rejected`` share before they differ (TRL's implicit prompt).

Triaged records (Stage 1) add ``category`` (INVERT / PUNISH / RETAIN), ``swapped``,
``verdicts`` on the stored chosen and rejected response and optionally ``oracle`` (an oracle's
compliant response y_c for a PUNISH pair) or ``corrective`` (a y_c found without an oracle, with
where it came from: ``{"response", "source", "judge", "verdict", ...}``,
:mod:`realign.triage.corrective`); Stage 2 adds ``impact``. Other fields are kept
under ``meta`` and written back unchanged.

**One order in memory.** Every INVERT record read is held *swapped*: ``chosen`` is the response
that complies with the new policy (the old loser), ``rejected`` the old winner, ``swapped`` is
true — whatever order its file stored, so no method has to ask. The stored order comes from the
record itself (``swapped``; the reference implementation's DPO-Gold lists
``chosen_violations`` / ``rejected_violations``; our ``verdicts``) or, for files that do not
say (the reference implementation's ``*_triage.json`` keeps INVERT pairs in their original
order), from the reader's ``invert_order`` (``--invert-order original|swapped``); an INVERT
record whose order is unknown is an error naming that flag.
"""

from .io import LoadResult, read_pairs, write_pairs
from .records import (CATEGORIES, CONFLICT, INVERT, PUNISH, RETAIN, Category, Message, PreferencePair, Text,
                      as_response, prompt_text, response_text)
from .sources import iter_source
from .validation import INVERT_ORDERS, parse_record

__all__ = ["CATEGORIES", "CONFLICT", "INVERT", "INVERT_ORDERS", "PUNISH", "RETAIN", "Category", "LoadResult",
           "Message", "PreferencePair", "Text", "as_response", "iter_source", "parse_record", "prompt_text",
           "read_pairs", "response_text", "write_pairs"]
