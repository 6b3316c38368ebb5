"""Corpora, vocabularies and batching.

Import the submodules directly: ``rnnkit.data.text`` (vocabularies, token streams,
truncated-BPTT batching), ``rnnkit.data.datasets`` (the corpora in ``../shared/data``
and the built-in default corpus), ``rnnkit.data.tasks`` (classify/tag/seq2seq examples,
their corpora and padded batches) and ``rnnkit.data.seq`` (padding and packing).
"""

__all__ = []
