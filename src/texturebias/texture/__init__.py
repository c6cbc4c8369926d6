"""SCRAMBLE: texture synthesis (Gatys et al. 2015) and tile shuffling — what is left when global shape is gone.

Modules: ``network`` (the VGG-19 texture model), ``gram``, ``lbfgs``, ``synthesis``, ``pipeline``
(``texturebias synthesize``), ``scramble`` (``texturebias scramble``), ``tile_accuracy``, ``layers``.
May import: ``models``, ``data``, ``train`` (top-1 validation), ``report``, ``utils``, ``errors``.
"""
