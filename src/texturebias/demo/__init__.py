"""``texturebias demo``: the papers' findings in a generated shapes x textures world, in minutes, offline.

Modules: ``world`` (the generated shapes x textures world), ``config``, ``steps`` (data sets, stylizer,
training, evaluation through the toolkit's own commands), ``findings``, ``figures``, ``report``,
``pipeline`` (:func:`~texturebias.demo.pipeline.run_demo`), ``scenes`` and ``detection`` (the miniature detection
transfer of ``--detection``). See docs/demo.md. May import every other package.
"""

from texturebias.demo.config import DemoConfig, DemoResult, DemoSizes
from texturebias.demo.pipeline import run_demo

__all__ = ["DemoConfig", "DemoResult", "DemoSizes", "run_demo"]
