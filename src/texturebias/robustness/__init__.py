"""ROBUSTNESS: the twelve parametric distortions, accuracy curves and the model-vs-human benchmark.

Modules: ``manipulations`` (the pixel and spectral recipes), ``eidolon``, ``datafiles`` (G18 tables),
``distortions`` (the catalogue and ``texturebias distort``), ``curves`` (distort on the fly and classify),
``benchmark`` (pre-distorted model-vs-human folders, metrics, leaderboard), ``figures``.
May import: ``evaluate`` (mapping, trials, metrics, cue-conflict classification), ``data``, ``models``,
``report``, ``utils``, ``errors``.
"""
