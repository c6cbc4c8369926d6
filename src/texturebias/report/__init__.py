"""Figures and reports (matplotlib PNG + PDF, no LaTeX). Nothing is imported here; import the modules."""
