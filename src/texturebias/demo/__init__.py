"""``texturebias demo``: the papers' findings in a generated shapes x textures world, in minutes, offline.

See :func:`texturebias.demo.pipeline.run_demo` and docs/demo.md.
"""

from texturebias.demo.pipeline import DemoConfig, DemoResult, DemoSizes, run_demo

__all__ = ["DemoConfig", "DemoResult", "DemoSizes", "run_demo"]
