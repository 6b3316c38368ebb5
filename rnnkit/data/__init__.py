"""Corpora, vocabularies and batching.

Import the submodules directly: ``rnnkit.data.text`` (vocabularies, token streams,
truncated-BPTT batching), ``rnnkit.data.datasets`` (the corpora in ``../shared/data``
and the built-in default corpus), and ``rnnkit.data.tasks`` (classify/tag/seq2seq examples,
their corpora and padded batches).
"""

__all__ = []
