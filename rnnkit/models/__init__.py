"""Task models: thin compositions of rnnkit layers, heads and losses."""

from rnnkit.models.language_model import CharLM, LanguageModel, WordLM, build_language_model

__all__ = ["LanguageModel", "CharLM", "WordLM", "build_language_model"]

from rnnkit.models.classifier import Classifier  # noqa: E402
from rnnkit.models.ensemble import Ensemble  # noqa: E402
from rnnkit.models.seq2seq import Seq2Seq  # noqa: E402
from rnnkit.models.tagger import Tagger  # noqa: E402

__all__ += ["Classifier", "Tagger", "Seq2Seq", "Ensemble", "build_task_model"]


def build_task_model(model_config, task_config, vocab_size, num_labels=0):
    """A Classifier, Tagger or Seq2Seq from ``ModelConfig`` and ``TaskConfig`` (or dicts)."""
    m = model_config if isinstance(model_config, dict) else vars(model_config)
    t = task_config if isinstance(task_config, dict) else vars(task_config)
    common = dict(embed_size=m["embed_size"], hidden_size=m["hidden_size"],
                  num_layers=m["num_layers"], cell=m["cell"], dropout=m["dropout"],
                  word_dropout=t.get("word_dropout", 0.0), **m["options"])
    if t["task"] == "classify":
        # a tied word LM's layout (the last layer embed_size wide, locked dropout between
        # layers) is the classifier's too, so an AWD LM transfers (--init-from)
        if m.get("tie_weights") and m["embed_size"] != m["hidden_size"]:
            common["last_size"] = m["embed_size"]
        if m.get("locked_dropout"):
            common["locked_dropout"] = True
        return Classifier(vocab_size, num_labels, bidirectional=t["bidirectional"],
                          pooling=t["pooling"], mlp_size=t["mlp_size"],
                          lm_weight=t.get("lm_weight", 0.0), **common)
    if t["task"] == "tag":
        return Tagger(vocab_size, num_labels, bidirectional=t["bidirectional"], **common)
    if t["task"] == "seq2seq":
        return Seq2Seq(vocab_size, bidirectional=t["bidirectional"],
                       attention=t["attention"] or None, hard_attention=t["hard_attention"],
                       input_feeding=t["input_feeding"], peeky=t["peeky"],
                       reverse_source=t["reverse_source"],
                       teacher_forcing=t["teacher_forcing"], **common)
    raise ValueError(f"build_task_model: task must be 'classify', 'tag' or 'seq2seq', "
                     f"got {t['task']!r}")
