"""Training configuration: dataclasses with defaults, TOML files, ``--key=value``.

A config has four sections, each a dataclass: ``data``, ``model``, ``optim`` and
``train``. A TOML file uses the same names as tables::

    [model]
    cell = "lstm"
    hidden_size = 200

    [model.options]          # passed through to rnnkit.LSTM / GRU / RNN
    layer_norm = true

On the command line ``--model.hidden_size=650`` or, when the field name is unique
across sections, ``--hidden_size=650``. An unknown key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig",
           "TaskConfig", "Config", "config_from_dict", "load_toml", "read_toml", "apply_overrides",
           "to_dict", "dotted_keys", "get_key", "resolve_key"]


class ConfigError(ValueError):
    """An unknown key or a bad value in a config."""


@dataclass
class DataConfig:
    dataset: str = ""          # a name in rnnkit.data.datasets.CORPORA ("" = built in)
    train: str = ""            # a file path; alone it is split 90/5/5 by position
    valid: str = ""
    test: str = ""
    level: str = ""            # "char" | "word"; "" = the dataset's own level


@dataclass
class ModelConfig:
    cell: str = "lstm"         # "lstm" | "gru" | "rnn" | any registered family
    arch: str = "rnn"          # "rnn" (the cell) | "tcn" | "transformer" (lm, forecast)
    embed_size: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0       # on the embedding, between layers and before the decoder
    tie_weights: bool = False
    init_range: float = 0.0    # > 0: every parameter ~ U(-r, r) (Zaremba et al.)
    # AWD-LSTM (Merity et al. 2017); tie_weights with embed_size != hidden_size gives
    # the last layer embed_size units (lm; classify too, to start from such an LM)
    dropout_input: float = -1.0   # on the embeddings; < 0 = dropout
    dropout_hidden: float = -1.0  # between recurrent layers; < 0 = dropout
    dropout_embed: float = 0.0    # whole words of the embedding matrix per chunk
    locked_dropout: bool = False  # one dropout mask per sequence, shared over time (lm, classify)
    embed_init_range: float = 0.0  # > 0: embedding ~ U(-r, r), decoder bias 0
    # the output layer (lm; rnnkit.models.softmax)
    softmax: str = "full"      # "full" | "sampled" (training; exact eval) | "adaptive"
    num_samples: int = 0       # sampled: negatives per step; 0 = min(1024, V - 1)
    proposal: str = "log_uniform"  # sampled: "log_uniform" (Zipfian) | "unigram"
    cutoffs: list = field(default_factory=list)  # adaptive: cluster starts; [] = from V
    div_value: float = 4.0     # adaptive: width ratio of successive tail clusters
    options: dict = field(default_factory=dict)  # extra rnnkit layer options


@dataclass
class OptimConfig:
    optimizer: str = "adam"    # "sgd" | "adam" | "adamw" | "ntasgd" (SGD, then averaged)
    lr: float = 2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    clip: float = 5.0          # global gradient norm; 0 = no clipping
    schedule: str = "constant"  # "constant" | "step" | "plateau" | "cosine" | "slanted"
    decay: float = 0.5         # step/plateau: multiply the learning rate by this
    decay_start: int = 0       # step: epochs at full learning rate before decaying
    patience: int = 0          # plateau: epochs without improvement tolerated
    warmup_steps: int = 0      # linear warm-up from 0 over this many steps
    min_lr_ratio: float = 0.0  # cosine: final learning rate / lr
    cut_frac: float = 0.1      # slanted: fraction of the steps spent rising (ULMFiT)
    stlr_ratio: float = 32.0   # slanted: peak learning rate / lowest learning rate
    layer_lr_decay: float = 1.0  # classify: lr / this^depth per layer group from the top
    nonmono: int = 5           # ntasgd: average once valid loss > best before the last N


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    bptt: int = 100            # truncated BPTT length (time steps per chunk)
    eval_batch_size: int = 10
    loss_reduction: str = "mean"  # "mean" per token | "sum_over_time" (Zaremba et al.)
    variable_bptt: bool = False  # lm: chunk lengths ~ N(bptt, 5) (p 0.95) or N(bptt/2, 5)
    min_bptt: int = 5          # variable_bptt: the shortest chunk
    ar_alpha: float = 0.0      # lm: + alpha * mean(dropped last-layer output^2)
    tar_beta: float = 0.0      # lm: + beta * mean((h_t - h_{t-1})^2), undropped
    seed: int = 1234
    threads: int = 0           # torch intra-op threads per process; 0 = torch's default
    max_minutes: float = 0.0   # stop (with a checkpoint) after this long; 0 = no limit
    budget_clock: str = "wall"  # max_minutes counts "wall" time or this process's "cpu"
                               # time (equal budgets for runs on a shared machine)
    log_every: int = 50        # steps between metric rows
    checkpoint_every: int = 1000  # steps between mid-epoch checkpoints; 0 = epoch ends
    checkpoint_minutes: float = 5.0  # also one after this many minutes; 0 = steps only
    keep_checkpoints: int = 3  # the last N checkpoints kept (plus best); 0 = keep all
    progress: str = "auto"     # "auto" | "bar" | "log" | "off"
    tensorboard: bool = True
    sample_length: int = 300   # characters / words sampled at the end of training; 0 = none
    out: str = "runs/default"


@dataclass
class TaskConfig:
    task: str = "lm"           # "lm" | "classify" | "tag" | "seq2seq"
    bidirectional: bool = False  # encoder (classify, tag, seq2seq)
    pooling: str = "max"       # classify: "last" | "mean" | "max" | "attention" | "concat"
    mlp_size: int = 0          # classify: hidden width of the head; 0 = linear
    attention: str = ""        # seq2seq: "" | "dot" | "general" | "additive" | "scaled_dot"
    hard_attention: bool = False
    input_feeding: bool = False
    peeky: bool = False
    reverse_source: bool = False
    teacher_forcing: float = 1.0        # probability of feeding the gold previous token
    teacher_forcing_final: float = -1.0  # linear schedule to this by the last step; <0 = constant
    beam_size: int = 1         # seq2seq evaluation / predict decoding
    length_penalty: float = 1.0
    max_length: int = 0        # seq2seq decoding limit; 0 = longest target + 5
    min_count: int = 1         # tokens seen fewer times map to <unk>
    word_dropout: float = 0.0  # training: each source token -> <unk> with this probability
    lm_weight: float = 0.0     # classify: weight of the auxiliary language-model loss
    init_from: str = ""        # classify, lm: a word-LM run whose embedding + layers start it
    gradual_unfreezing: bool = False  # classify: epoch e trains the top e layer groups
    unknown: str = "unk"       # predict: unknown symbols -> "unk" | "error"
    target: str = ""           # forecast: the CSV column to predict
    features: str = ""         # forecast: other input columns, comma-separated
    horizon: int = 1           # forecast: steps ahead (H)
    window: int = 24           # forecast: rows of history read (W)
    season: int = 0            # forecast: season length for seasonal naive; 0 = none
    strategy: str = "direct"   # forecast: "direct" (H outputs) | "seq2seq" (decoder)
    forecast_loss: str = "mse"  # forecast: "mse" | "mae" (on the scaled target)
    fill: str = ""             # forecast: NA cells: "" = error | "interpolate"
    length: int = 100          # adding / copy: sequence length T (data/memory.py)
    epoch_batches: int = 100   # adding / copy: generated training batches per epoch
    image_size: int = 48       # caption / vqa: images resized to S x S pixels
    cnn_width: int = 16        # caption / vqa: CNN channels width, 2 width, 4 width
    attention_reg: float = 0.0  # caption: doubly stochastic attention regulariser λ
    entropy_weight: float = 0.01  # caption: hard attention's entropy bonus
    hops: int = 2              # vqa: attention steps over the image
    scenes: int = 3000         # caption / vqa without --data: built-in training scenes
    references: str = "random"  # caption: the training caption of an image each epoch:
                               # "random" (any of its references) | "first" (its first)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def validate(self):
        """Raise ConfigError naming the first bad value."""
        from rnnkit.cells import FAMILIES  # every registered family (register_family)

        _choice("model.cell", self.model.cell, tuple(FAMILIES))
        _choice("data.level", self.data.level, ("", "char", "word"))
        _choice("optim.optimizer", self.optim.optimizer, ("sgd", "adam", "adamw", "ntasgd"))
        _choice("optim.schedule", self.optim.schedule,
                ("constant", "step", "plateau", "cosine", "slanted"))
        _choice("train.loss_reduction", self.train.loss_reduction, ("mean", "sum_over_time"))
        _choice("train.progress", self.train.progress, ("auto", "bar", "log", "off"))
        _choice("train.budget_clock", self.train.budget_clock, ("wall", "cpu"))
        _choice("task.task", self.task.task,
                ("lm", "classify", "tag", "seq2seq", "forecast", "adding", "copy",
                 "caption", "vqa"))
        _choice("task.pooling", self.task.pooling,
                ("last", "mean", "max", "attention", "concat"))
        _choice("task.attention", self.task.attention,
                ("", "dot", "general", "additive", "scaled_dot"))
        _choice("task.unknown", self.task.unknown, ("unk", "error"))
        _choice("task.strategy", self.task.strategy, ("direct", "seq2seq"))
        _choice("task.forecast_loss", self.task.forecast_loss, ("mse", "mae"))
        _choice("task.fill", self.task.fill, ("", "interpolate"))
        _choice("task.references", self.task.references, ("random", "first"))
        for key in ("model.embed_size", "model.hidden_size", "model.num_layers",
                    "train.epochs", "train.batch_size", "train.bptt",
                    "train.eval_batch_size", "train.log_every", "task.beam_size",
                    "task.min_count", "task.horizon", "task.window", "task.length",
                    "task.epoch_batches", "task.cnn_width", "task.hops", "task.scenes",
                    "optim.nonmono", "train.min_bptt"):
            if _get(self, key) < 1:
                raise ConfigError(f"config key {key}: must be >= 1, got {_get(self, key)}")
        # 0 means "off" / "default" for these (documented at the fields); negative is not
        for key in ("optim.decay_start", "optim.patience", "optim.warmup_steps",
                    "train.threads", "train.checkpoint_every", "train.keep_checkpoints",
                    "train.sample_length", "task.mlp_size", "task.max_length",
                    "task.season"):
            if _get(self, key) < 0:
                raise ConfigError(f"config key {key}: must be >= 0, got {_get(self, key)}")
        for key in ("optim.lr",):
            _check_float(key, _get(self, key), 0.0, math.inf, low_open=True)
        for key in ("optim.weight_decay", "optim.clip", "model.init_range",
                    "train.max_minutes", "train.checkpoint_minutes", "task.lm_weight",
                    "task.length_penalty",
                    "task.attention_reg", "task.entropy_weight", "model.embed_init_range",
                    "train.ar_alpha", "train.tar_beta"):
            _check_float(key, _get(self, key), 0.0, math.inf)
        for key in ("model.dropout", "model.dropout_embed", "task.word_dropout",
                    "optim.momentum", "optim.beta1",
                    "optim.beta2"):
            _check_float(key, _get(self, key), 0.0, 1.0, high_open=True)
        for key in ("optim.min_lr_ratio", "task.teacher_forcing"):
            _check_float(key, _get(self, key), 0.0, 1.0)
        _check_float("optim.decay", self.optim.decay, 0.0, 1.0, low_open=True)
        if self.task.teacher_forcing_final >= 0 or not math.isfinite(
                self.task.teacher_forcing_final):  # < 0 means "constant"
            _check_float("task.teacher_forcing_final", self.task.teacher_forcing_final,
                         -math.inf, 1.0)
        if self.task.image_size < 8:
            raise ConfigError(f"config key task.image_size: must be >= 8 (the CNN halves "
                              f"it three times), got {self.task.image_size}")
        if not self.train.out.strip():
            raise ConfigError("config key train.out: must not be empty (it is the output "
                              "directory, --out)")
        for key in ("model.dropout_input", "model.dropout_hidden"):  # < 0: model.dropout
            _check_float(key, _get(self, key), -math.inf, 1.0, high_open=True)
        _check_lm_only(self)
        _check_transfer(self)
        if (self.model.tie_weights and self.model.embed_size != self.model.hidden_size
                and self.model.arch != "rnn"):
            raise ConfigError(f"config key model.tie_weights: with model.arch "
                              f"{self.model.arch!r} needs embed_size == hidden_size, got "
                              f"{self.model.embed_size} and {self.model.hidden_size}")
        _check_softmax(self.model, self.task.task)
        if self.model.arch != "rnn":
            _check_baseline(self.model, self.task.task)
            return self
        check_layer_options(self.model.cell, self.model.options, self.model.hidden_size)
        return self


def _check_lm_only(config):
    """The AWD-LSTM training options act on the word/char LM trainer only."""
    if config.task.task == "lm":
        return
    for key, on in (("optim.optimizer", "ntasgd"), ("train.variable_bptt", True),
                    ("train.ar_alpha", None), ("train.tar_beta", None)):
        value = _get(config, key)
        if (value == on) if on is not None else value > 0:
            raise ConfigError(f"config key {key}: {value!r} works for task 'lm' only, "
                              f"got task {config.task.task!r}")


def _check_transfer(config):
    """ULMFiT's options (:mod:`rnnkit.training.transfer`): the slanted triangular
    schedule's shape, and the classify-only layer-group options."""
    _check_float("optim.cut_frac", config.optim.cut_frac, 0.0, 1.0, low_open=True,
                 high_open=True)
    _check_float("optim.stlr_ratio", config.optim.stlr_ratio, 1.0, math.inf)
    _check_float("optim.layer_lr_decay", config.optim.layer_lr_decay, 1.0, math.inf)
    if config.task.task == "classify":
        return
    for key, off in (("task.init_from", ""), ("task.gradual_unfreezing", False),
                     ("optim.layer_lr_decay", 1.0)):
        value = _get(config, key)
        if key == "task.init_from" and config.task.task == "lm":
            continue  # ULMFiT's second stage: an LM started from another
        if value != off:
            raise ConfigError(f"config key {key}: {value!r} works for task 'classify' "
                              f"{'and lm ' if key == 'task.init_from' else ''}only, got "
                              f"task {config.task.task!r}")


def _check_softmax(model, task):
    """model.softmax and its settings (the vocabulary-dependent bounds, num_samples <
    V and cutoffs < V, are the model's to check once the corpus is read)."""
    from rnnkit.models.softmax import PROPOSALS, SOFTMAXES

    _choice("model.softmax", model.softmax, SOFTMAXES)
    _choice("model.proposal", model.proposal, PROPOSALS)
    if model.softmax != "full" and task != "lm":
        raise ConfigError(f"config key model.softmax: {model.softmax!r} works for task "
                          f"'lm' only, got task {task!r}")
    if model.num_samples < 0:
        raise ConfigError(f"config key model.num_samples: must be >= 0 (0 = min(1024, "
                          f"V - 1)), got {model.num_samples}")
    cutoffs = model.cutoffs
    if (any(isinstance(c, bool) or not isinstance(c, int) for c in cutoffs)
            or any(b <= a for a, b in zip(cutoffs, cutoffs[1:]))
            or (cutoffs and cutoffs[0] < 1)):
        raise ConfigError(f"config key model.cutoffs: must be strictly increasing "
                          f"integers >= 1 ([] = from the vocabulary size), got {cutoffs!r}")
    _check_float("model.div_value", model.div_value, 1.0, math.inf)
    if model.softmax == "adaptive" and model.tie_weights:
        raise ConfigError("config key model.tie_weights: needs model.softmax 'full' or "
                          "'sampled', got 'adaptive'")


def _check_baseline(model, task):
    """model.arch: tcn / transformer for the LM and forecasting only, with options its
    constructor knows and accepts (built on the meta device)."""
    import torch

    from rnnkit.models.baselines import BASELINES, baseline_option_defaults, make_baseline

    _choice("model.arch", model.arch, ("rnn", *BASELINES))
    if task not in ("lm", "forecast"):
        raise ConfigError(f"config key model.arch: {model.arch!r} works for the tasks lm "
                          f"and forecast, got task {task!r}")
    defaults = baseline_option_defaults(model.arch)
    for name, value in model.options.items():
        if name not in defaults:
            raise ConfigError(f"config key model.options.{name}: unknown option for "
                              f"arch {model.arch!r}; known: {', '.join(sorted(defaults))}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key model.options.{name}: must be an integer, "
                              f"got {value!r}")
    try:
        with torch.device("meta"):  # no memory: a bad option fails before any data
            make_baseline(model.arch, 1, model.hidden_size, model.num_layers, **model.options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config key model.options: {e}") from None


def _check_float(key, value, low, high, low_open=False, high_open=False):
    """``low <= value <= high`` (open ends as asked), finite; NaN fails every bound."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        if high == math.inf:
            want = f"> {low:g}" if low_open else f">= {low:g}"
            want += " and finite"
        else:
            want = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"config key {key}: must be {want}, got {value}")


# layer arguments the models set themselves: not options a config may pass through
_MODEL_SET = {"self", "input_size", "hidden_size", "num_layers", "batch_first", "dropout",
              "bidirectional", "device", "dtype", "options"}


def layer_option_defaults(cell):
    """``{option: default}`` that ``model.options`` may pass to the ``cell`` layer (its
    constructor's keyword arguments, minus those the models set)."""
    import inspect

    from rnnkit.layers import layer_class

    defaults = {}
    for cls in reversed(layer_class(cell).__mro__):
        if "__init__" in vars(cls) and cls.__module__.startswith("rnnkit"):
            for name, parameter in inspect.signature(vars(cls)["__init__"]).parameters.items():
                if name not in _MODEL_SET:
                    defaults[name] = parameter.default
    return defaults


def _check_option_type(name, value, default):
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"config key model.options.{name}: must be true or false, "
                          f"got {value!r}")
    if isinstance(default, float) and (isinstance(value, bool)
                                       or not isinstance(value, (int, float))):
        raise ConfigError(f"config key model.options.{name}: must be a number, "
                          f"got {value!r}")


def check_layer_options(cell, options, hidden_size):
    """Raise ConfigError naming an unknown layer option or a value the layer refuses
    (its own ValueError / TypeError), by building the layer on the meta device (no
    memory, no data): a bad option fails before any data is read."""
    from rnnkit.layers import make_layer

    defaults = layer_option_defaults(cell)
    for name, value in options.items():
        if name not in defaults:
            raise ConfigError(f"config key model.options.{name}: unknown option for "
                              f"cell {cell!r}; known: {', '.join(sorted(defaults))}")
        if name == "proj_size" and value:
            raise ConfigError(f"config key model.options.proj_size: the rnnkit models "
                              f"read hidden_size outputs and do not support projections, "
                              f"got {value!r}")
        _check_option_type(name, value, defaults[name])
        _build_meta_layer(f"model.options.{name}", cell, hidden_size, {name: value})
    _build_meta_layer("model.options", cell, hidden_size, options)


def _build_meta_layer(key, cell, hidden_size, options):
    from rnnkit.layers import make_layer

    try:
        make_layer(cell, 1, hidden_size, device="meta", **options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config key {key}: {e}") from None


def _choice(key, value, allowed):
    if value not in allowed:
        raise ConfigError(f"config key {key}: must be one of {', '.join(map(repr, allowed))}, "
                          f"got {value!r}")


def _get(config, dotted):
    section, name = dotted.split(".")
    return getattr(getattr(config, section), name)


def _sections():
    return {f.name: f.type for f in dataclasses.fields(Config)}


def _field_types(section):
    cls = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
           "train": TrainConfig, "task": TaskConfig}[section]
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _coerce(key, kind, value):
    """Check a value against the field's declared type (a string annotation)."""
    if kind == "dict":
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a table, got {value!r}")
        return dict(value)
    if kind == "list":  # a TOML array, or "2000,10000" from the command line
        if isinstance(value, str):
            try:
                value = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"config key {key}: expected a list of integers, got "
                                  f"{value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        return list(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key}: expected {kind}, got {value!r}")


def config_from_dict(obj, base=None, where=None):
    """Apply a nested dict (``{"model": {"hidden_size": 200}}``) on top of ``base``
    (default: all defaults); unknown sections or keys raise ConfigError (prefixed with
    ``where``, a file name, when given)."""
    try:
        return _from_dict(obj, base)
    except ConfigError as e:
        if where is None:
            raise
        raise ConfigError(f"{where}: {e}") from None


def _from_dict(obj, base):
    config = dataclasses.replace(base) if base is not None else Config()
    for section, values in obj.items():
        if section not in _sections():
            raise ConfigError(f"unknown config section {section!r}; known: "
                              f"{', '.join(_sections())}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a table")
        types = _field_types(section)
        current = dataclasses.replace(getattr(config, section))
        for name, value in values.items():
            if name not in types:
                raise ConfigError(f"unknown config key {section}.{name!s}")
            setattr(current, name, _coerce(f"{section}.{name}", types[name], value))
        setattr(config, section, current)
    return config


MAX_CONFIG_BYTES = 1 << 20


def read_toml(path):
    """The tables of a TOML config file. A path that is missing, not a regular file
    (a directory, a FIFO, a device), larger than 1 MiB, not UTF-8 or not TOML is a
    ConfigError naming it; at most 1 MiB is ever read."""
    name = str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {name!r} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {name!r} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(f"config file {name!r} is {what}, expected a TOML file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config file {name!r} cannot be read: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {name!r} is larger than 1 MiB; a config is a few "
                          f"lines of TOML")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {name!r} is not UTF-8 text ({e.reason} at byte "
                          f"{e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {name!r} is not valid TOML: {e}") from None


def load_toml(path, base=None):
    """Read a TOML config file on top of ``base``."""
    return config_from_dict(read_toml(path), base, where=path)


def dotted_keys(obj, prefix=""):
    """``{"model": {"hidden_size": 8, "options": {"zoneout": 0.1}}}`` ->
    ``{"model.hidden_size", "model.options.zoneout"}``."""
    keys = set()
    for name, value in obj.items():
        if isinstance(value, dict) and value:
            keys |= dotted_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def get_key(config, dotted):
    """The value at ``"model.hidden_size"`` or ``"model.options.zoneout"`` (None when
    an option is not set)."""
    section, name, *rest = dotted.split(".")
    value = getattr(getattr(config, section), name)
    if rest:
        return value.get(".".join(rest)) if isinstance(value, dict) else None
    return value


def _parse_value(text):
    """A command-line value as TOML (numbers, true/false, strings) else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve_key(key):
    """``hidden_size`` / ``model.hidden_size`` / ``model.options.zoneout`` -> path."""
    parts = key.replace("-", "_").split(".")
    if parts[0] in _sections():
        return parts
    owners = [s for s in _sections() if parts[0] in _field_types(s)]
    if len(owners) != 1:
        why = "is ambiguous, prefix a section" if owners else "is unknown"
        raise ConfigError(f"config key {key!r} {why}")
    return [owners[0], *parts]


def apply_overrides(config, overrides):
    """Apply ``{"model.hidden_size": "650", ...}`` (values as strings) to a config."""
    for key, text in overrides.items():
        path = resolve_key(key)
        value = _parse_value(text)
        if len(path) > 2 and path[1] == "options":
            options = dict(config.model.options)
            options[".".join(path[2:])] = value
            nested = {"model": {"options": options}}
        elif len(path) == 2:
            types = _field_types(path[0])
            if path[1] in types and types[path[1]] == "str":
                value = text  # keep "1e-3"-looking strings verbatim for str fields
            nested = {path[0]: {path[1]: value}}
        else:
            raise ConfigError(f"unknown config key {key!r}")
        config = config_from_dict(nested, config)
    return config


def to_dict(config):
    return dataclasses.asdict(config)
