"""Evaluation: responses of each model state (local :mod:`realign.modeling.generation`, or a server), target
policy agreement (TPA), attack success, utility, win rate."""
