"""Stage 1, ``realign triage`` (config section ``triage:``, run folder ``triage/``): the
triage of the old preference pairs under the new policy (Alg. 1 lines 3-6).

Every old pair (x, y_w, y_l) is judged on both responses under π_new:

* INVERT  (c_w = 0, c_l = 1): stored swapped — chosen = old y_l (compliant), rejected = old y_w;
* PUNISH  (c_w = 0, c_l = 0): both violate, no usable direction (the "false dichotomy");
* RETAIN  (c_w = 1): the old winner still complies.

Verdicts come from the verdict cache where present, so an interrupted triage resumes with no
repeated judge calls. Besides the triaged records it can write the DPO-Gold relabelled set
(INVERT swapped, PUNISH paired with an oracle's compliant response y_c, or excluded) and the
naive relabelled set (swap every pair whose old winner violates) in TRL's standard format.

* the categories are :data:`realign.data.CATEGORIES` (INVERT, PUNISH and RETAIN are importable
  from here too); the decision table, the old pair of a triaged record and the relabelled sets
  are :mod:`realign.data.triaged`, below the stages that read triaged records;
* :mod:`.judging` — the verdicts of the pairs (:class:`realign.judges.store.VerdictStore`), abstentions and categories;
* :mod:`.relabel` — the oracle's y_c for PUNISH prompts;
* :mod:`.review` — the verdicts most likely wrong, for a person to label, and the labels put
  over the judge's verdicts;
* :mod:`.run` — the stage on files: read, triage, write the records and the summary;
* :mod:`.stage` — the stage as ``realign run`` drives it (:class:`realign.runs.stage.Stage`).
"""

from __future__ import annotations

from ..data import INVERT, PUNISH, RETAIN

__all__ = ["INVERT", "PUNISH", "RETAIN"]
