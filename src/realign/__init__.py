"""trace-realign: re-align a language model to a changed policy with TRACE (arXiv 2511.02623).

Stages, each named once (command, module or package, config section, run folder):
:mod:`realign.triage` (Alg. 1 lines 3-6), :mod:`realign.score` (impact scores, Alg. 1 lines
9-31), :mod:`realign.train` (hybrid training, Alg. 1 lines 34-46), :mod:`realign.evaluate` and
:mod:`realign.report`; the judges in :mod:`realign.judges`.
"""

import logging as _logging
import warnings as _warnings

__version__ = "0.1.0"

#: (logger, message) of what the libraries underneath log on realign's ordinary work that says
#: nothing to its user; each is dropped by a filter on its own logger, which their set-up keeps:
#:
#: * DeepSpeed, imported by accelerate and transformers whenever it is installed, logs "Setting
#:   accelerator to CPU ..." on a machine without a GPU, on *stdout* (its own handler), which
#:   corrupts output meant to be captured (``BASE=$(realign models prepare smollm2)``);
#: * a tokenizer warns "Token indices sequence length is longer than ..." on a long record:
#:   realign tokenises it on purpose and cuts the ids itself (:func:`realign.modeling.sequences.encode`);
#: * the Trainer says "mtime may not be reliable ..." when the checkpoints it rotates were
#:   written within a second of each other, as in any short run.
#:
#: Everything else these loggers say still shows.
_NOISE = (
    ("DeepSpeed", "we were unable to detect it"),
    ("transformers.tokenization_utils_base", "Token indices sequence length is longer than"),
    ("transformers.trainer_utils", "mtime may not be reliable"),
)


def _drop_library_noise() -> None:
    """Filters for :data:`_NOISE`, and one for transformers' FutureWarning on
    ``is_gradient_checkpointing``, which peft reads from every model it puts a LoRA adapter on
    (a deprecation between the two libraries, nothing a user can act on)."""
    for name, message in _NOISE:
        _logging.getLogger(name).addFilter(lambda record, message=message: message not in str(record.msg))
    _warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


_drop_library_noise()
