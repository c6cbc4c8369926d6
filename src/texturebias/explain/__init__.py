"""EXPLAIN: exact BagNet class evidence, its figures, informative patches, and logit correlation.

Modules: ``evidence`` (the à-trous :class:`~texturebias.explain.evidence.DensePlan` and
:func:`~texturebias.explain.evidence.class_evidence`), ``plots`` (paper-style heatmap figures),
``heatmaps`` (``texturebias heatmap``), ``patches`` (``texturebias patches``), ``correlation``
(``texturebias correlate``). May import: ``models``, ``data``, ``report``, ``utils``, ``errors``.
"""
