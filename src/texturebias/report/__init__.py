"""REPORT: the house figure style and the one figure writer (:mod:`texturebias.report.figures`).

May import: ``utils``. Drawing a particular figure belongs to the package whose results it shows.
"""
