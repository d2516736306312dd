"""Scale-out: the gallery's indexes sharded over Ray actors (``[cluster] backend = "ray"``).

``backend.py`` connects to Ray and gives the gallery its index factory / loader; ``pool.py`` owns the
shard actors (start, call, restart-and-reload from the store); ``shard.py`` is the actor (the
single-node indexes of one hash partition); ``sharded.py`` is the scatter-gather ``TemplateIndex``.
Nothing here scores templates: the single-node kernels (BLAS, numba, FAISS) do, inside each shard.
"""
