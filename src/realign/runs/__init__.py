"""How a run is driven and kept: the :class:`~realign.runs.stage.Stage` protocol and what every
stage shares, the keys that tell a stage's outputs are up to date (:mod:`~realign.runs.provenance`),
writing files safely (:mod:`~realign.runs.files`) and ``realign run``'s loop over the stages
(:mod:`~realign.runs.pipeline`)."""
