"""Evaluation against human data: 16-class decisions, trial CSVs, shape bias and consistency metrics.

Modules: :mod:`~texturebias.evaluate.mapping` (ImageNet → 16 categories), :mod:`~texturebias.evaluate.trials`
(the human trial-CSV schema), :mod:`~texturebias.evaluate.metrics` (shape bias, Cohen's κ, accuracy
difference), :mod:`~texturebias.evaluate.cue_conflict` (evaluate a model on the cue-conflict stimuli).
Nothing is imported here so that ``import texturebias.evaluate`` stays cheap.
"""
