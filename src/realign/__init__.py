"""trace-realign: re-align a language model to a changed policy with TRACE (arXiv 2511.02623).

Stages (one module each): :mod:`realign.triage` (Alg. 1 lines 3-6), impact scores
(Alg. 1 lines 9-31), hybrid training (Alg. 1 lines 34-46), evaluation and reports.
"""

__version__ = "0.1.0"
