"""MEASURE: how a classifier decides on the 16 categories, and how that compares with humans.

Modules: ``mapping`` (ImageNet-1k → 16 categories), ``trials`` (the human trial-CSV schema, reading and
writing trials, reuse of earlier trials), ``metrics`` (shape bias, accuracy, Cohen's κ / error consistency),
``cue_conflict`` (``texturebias shape-bias``), ``classify`` (``texturebias classify``), ``figures``
(the paper's shape-bias plots). May import: ``models``, ``data``, ``report``, ``utils``, ``errors``.
Nothing is imported here so that ``import texturebias.evaluate`` stays cheap.
"""
