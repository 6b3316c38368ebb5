"""Transfer from a language model to a classifier (ULMFiT: Howard & Ruder 2018; Dai & Le
2015): start a classifier's embedding and recurrent layers from a trained rnnkit word LM,
then fine-tune with discriminative learning rates and gradual unfreezing. A word LM can
start from another the same way (ULMFiT's second stage: the general-domain LM fine-tuned
on target-domain text with its own vocabulary); its decoder bias rows are mapped like
the embedding rows (and its decoder weight rows when not tied).

* :func:`init_from_lm` copies the LM's recurrent layers (same cell, sizes and options;
  a bidirectional classifier gets them in its forward direction, the reverse direction
  keeps its random start; an AWD-LSTM LM's per-layer sizes, tied with ``embed_size !=
  hidden_size``, go to a one-direction classifier given the same ``tie_weights``,
  ``locked_dropout`` and sizes) and maps the classifier's vocabulary onto the LM's: a word the
  LM knows takes its row; ``<unk>`` takes the LM's ``<unk>`` row; ``<s>`` and ``</s>``
  take the LM's ``<eos>`` row (the LM saw ``<eos>`` between sentences); every other word
  the LM never saw takes the mean of the LM's rows (ULMFiT's choice: a neutral word, not
  the LM's rare-word ``<unk>``); padding stays zero. Words match exactly (case included).
* :func:`discriminative_groups`: layer group d (0 = the head, counted from the top by
  :meth:`~rnnkit.models.Classifier.layer_groups`) learns at ``lr / decay^d``::

      η_d = η / decay^d          (ULMFiT: decay = 2.6)

* :func:`unfreeze`: in epoch e (1-based) only the top e groups train (ULMFiT's gradual
  unfreezing: the head alone first, one more group each epoch, all from epoch G on).

The checkpoint is read with the project's safe loading (safetensors + JSON, hashed;
nothing is unpickled).
"""
from __future__ import annotations

import torch

from rnnkit.training.checkpoint import (CheckpointError, join_shared, load_checkpoint,
                                        resolve_checkpoint)

__all__ = ["load_lm_weights", "init_from_lm", "discriminative_groups", "unfreeze"]

LM_KIND = "word_lm"


def load_lm_weights(path):
    """The best checkpoint of the word-LM run at ``path`` -> ``(weights, vocab_tokens,
    model_config)``; CheckpointError naming ``path`` when it is missing, not an rnnkit
    run, or holds anything but a recurrent word LM."""
    try:
        checkpoint = resolve_checkpoint(path, prefer="best")
        tensors, meta = load_checkpoint(checkpoint)
    except CheckpointError as e:
        raise CheckpointError(f"task.init_from: {e}") from None
    kind = meta.get("model", {}).get("kind")
    config = meta.get("model", {}).get("config", {})
    if kind != LM_KIND:
        raise CheckpointError(f"task.init_from: {str(path)!r} holds a {kind!r} model, "
                              f"expected a word language model ({LM_KIND!r}) trained by "
                              f"rnnkit train --task lm --level word")
    if config.get("arch", "rnn") != "rnn":
        raise CheckpointError(f"task.init_from: {str(path)!r} is a {config['arch']!r} LM; "
                              f"only recurrent LMs (model.arch 'rnn') transfer")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return join_shared(weights, meta["aliases"]), meta["vocab"]["tokens"], config


def _shape(tensor):
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


@torch.no_grad()
def init_from_lm(classifier, vocab, path):
    """Copy the LM at ``path`` into ``classifier`` (module docstring: which row each word
    gets). Returns ``{"known": n, "unknown": m}`` over the classifier's real words.
    ``classifier`` may also be a word LM (module docstring).

    Raises ValueError naming both shapes when the embedding width or a recurrent
    parameter differs, or both parameter lists when the layers differ in cell, depth
    or options."""
    weights, lm_tokens, lm_config = load_lm_weights(path)
    parts = getattr(classifier, "encoder", classifier)  # a Classifier or a word LM
    rnn = parts.rnn
    mine = {name: p for name, p in rnn.named_parameters() if not name.endswith("_reverse")}
    theirs = {k[len("rnn."):]: v for k, v in weights.items() if k.startswith("rnn.")}
    where = f"the LM in {str(path)!r}"
    if set(mine) != set(theirs):
        stack = any(name.startswith("layers.") for name in theirs)
        raise ValueError(f"init_from: the classifier's recurrent layers have parameters "
                         f"{sorted(mine)}, {where} has {sorted(theirs)} (cell "
                         f"{lm_config.get('cell')!r}, num_layers "
                         f"{lm_config.get('num_layers')}); use the LM's cell, num_layers "
                         f"and layer options"
                         + (f", and its layout: tie_weights "
                            f"{bool(lm_config.get('tie_weights'))}, locked_dropout "
                            f"{bool(lm_config.get('locked_dropout'))}, bidirectional false"
                            if stack else ""))
    for name, parameter in mine.items():
        if parameter.shape != theirs[name].shape:
            raise ValueError(f"init_from: recurrent parameter {name} is "
                             f"{_shape(parameter)} in the classifier but "
                             f"{_shape(theirs[name])} in {where} (its embed_size "
                             f"{lm_config.get('embed_size')}, hidden_size "
                             f"{lm_config.get('hidden_size')}); give the classifier the "
                             f"LM's sizes")
    table, embedding = weights["embedding.weight"], parts.embedding.weight
    if table.size(1) != embedding.size(1):
        raise ValueError(f"init_from: the classifier's embedding is {_shape(embedding)} "
                         f"(embed_size {embedding.size(1)}) but {where} has "
                         f"{_shape(table)} (embed_size {table.size(1)}); give the "
                         f"classifier the LM's embed_size")
    for name, parameter in mine.items():
        parameter.copy_(theirs[name])
    counts = _map_rows(embedding, vocab, table, lm_tokens)
    decoder = getattr(classifier, "decoder", None)
    if isinstance(decoder, torch.nn.Linear) and "decoder.bias" in weights:
        _map_rows(decoder.bias, vocab, weights["decoder.bias"], lm_tokens)
        if decoder.weight is not embedding and decoder.weight.shape[1:] == \
                weights["decoder.weight"].shape[1:]:
            _map_rows(decoder.weight, vocab, weights["decoder.weight"], lm_tokens)
    return counts


def _map_rows(embedding, vocab, table, lm_tokens):
    lm_index = {token: i for i, token in enumerate(lm_tokens)}
    aliases = {"<unk>": "<unk>", "<s>": "<eos>", "</s>": "<eos>"}
    mean = table.mean(0)
    known = unknown = 0
    for i, token in enumerate(vocab.tokens):
        if token == "<pad>":
            embedding[i].zero_()
            continue
        row = lm_index.get(aliases.get(token, token))
        if row is not None:
            embedding[i].copy_(table[row])
        else:
            embedding[i].copy_(mean)
        if token not in aliases:
            known, unknown = known + (row is not None), unknown + (row is None)
    return {"known": known, "unknown": unknown}


def discriminative_groups(groups, decay):
    """Optimizer parameter groups from layer groups (top first): group d carries
    ``lr_scale = decay^-d``, which the trainer multiplies into the scheduled rate."""
    return [{"params": params, "lr_scale": decay ** -depth}
            for depth, params in enumerate(groups) if params]


def unfreeze(groups, epoch):
    """Let the top ``epoch`` layer groups train and freeze the rest (``requires_grad``);
    returns how many groups train."""
    count = min(max(epoch, 1), len(groups))
    for depth, params in enumerate(groups):
        for parameter in params:
            parameter.requires_grad_(depth < count)
    return count
