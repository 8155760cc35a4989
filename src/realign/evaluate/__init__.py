"""Evaluation: generation, target policy agreement (TPA), attack success, utility, win rate."""
