"""UTILS: plumbing every job shares, and nothing else.

``io`` (atomic writes, the JSON NaN policy, file/folder identities, the one resume guard
``require_same_settings``), ``download`` (hash-checked downloads into ``$TEXTUREBIAS_HOME``), ``progress``,
``device``, ``seed``, ``distributed``. May import: ``errors``.
"""
