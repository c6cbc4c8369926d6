"""DATA: images in (one loader for every odd format), label spaces, the pinned data-set registry, folder jobs.

Modules: ``images`` (find and load images), ``labels`` (ImageNet names and WordNet ids, the 16 categories,
stimulus naming), ``datasets`` (hash-checked stimuli and human data), ``folder_job`` (folder → folder jobs
with records, resume and sharding: ``stylize``, ``scramble``, ``distort``), ``samples``.
May import: ``utils``, ``errors``.
"""
