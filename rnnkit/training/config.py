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
import tomllib
from dataclasses import dataclass, field

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig",
           "TaskConfig", "Config", "config_from_dict", "load_toml", "apply_overrides", "to_dict"]


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
    cell: str = "lstm"         # "lstm" | "gru" | "rnn"
    embed_size: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0       # on the embedding, between layers and before the decoder
    tie_weights: bool = False
    init_range: float = 0.0    # > 0: every parameter ~ U(-r, r) (Zaremba et al.)
    options: dict = field(default_factory=dict)  # extra rnnkit layer options


@dataclass
class OptimConfig:
    optimizer: str = "adam"    # "sgd" | "adam" | "adamw"
    lr: float = 2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    clip: float = 5.0          # global gradient norm; 0 = no clipping
    schedule: str = "constant"  # "constant" | "step" | "plateau" | "cosine"
    decay: float = 0.5         # step/plateau: multiply the learning rate by this
    decay_start: int = 0       # step: epochs at full learning rate before decaying
    patience: int = 0          # plateau: epochs without improvement tolerated
    warmup_steps: int = 0      # linear warm-up from 0 over this many steps
    min_lr_ratio: float = 0.0  # cosine: final learning rate / lr


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    bptt: int = 100            # truncated BPTT length (time steps per chunk)
    eval_batch_size: int = 10
    loss_reduction: str = "mean"  # "mean" per token | "sum_over_time" (Zaremba et al.)
    seed: int = 1234
    threads: int = 0           # torch intra-op threads per process; 0 = torch's default
    max_minutes: float = 0.0   # stop (with a checkpoint) after this long; 0 = no limit
    log_every: int = 50        # steps between metric rows
    checkpoint_every: int = 1000  # steps between mid-epoch checkpoints; 0 = epoch ends
    keep_checkpoints: int = 3
    progress: str = "auto"     # "auto" | "bar" | "log" | "off"
    tensorboard: bool = True
    sample_length: int = 300   # characters / words sampled at the end of training
    out: str = "runs/default"


@dataclass
class TaskConfig:
    task: str = "lm"           # "lm" | "classify" | "tag" | "seq2seq"
    bidirectional: bool = False  # encoder (classify, tag, seq2seq)
    pooling: str = "max"       # classify: "last" | "mean" | "max" | "attention"
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
    unknown: str = "unk"       # predict: unknown symbols -> "unk" | "error"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)

    def validate(self):
        """Raise ConfigError naming the first bad value."""
        _choice("model.cell", self.model.cell, ("lstm", "gru", "rnn"))
        _choice("data.level", self.data.level, ("", "char", "word"))
        _choice("optim.optimizer", self.optim.optimizer, ("sgd", "adam", "adamw"))
        _choice("optim.schedule", self.optim.schedule,
                ("constant", "step", "plateau", "cosine"))
        _choice("train.loss_reduction", self.train.loss_reduction, ("mean", "sum_over_time"))
        _choice("train.progress", self.train.progress, ("auto", "bar", "log", "off"))
        _choice("task.task", self.task.task, ("lm", "classify", "tag", "seq2seq"))
        _choice("task.pooling", self.task.pooling, ("last", "mean", "max", "attention"))
        _choice("task.attention", self.task.attention,
                ("", "dot", "general", "additive", "scaled_dot"))
        _choice("task.unknown", self.task.unknown, ("unk", "error"))
        for key in ("model.embed_size", "model.hidden_size", "model.num_layers",
                    "train.epochs", "train.batch_size", "train.bptt",
                    "train.eval_batch_size", "train.log_every", "task.beam_size",
                    "task.min_count"):
            if _get(self, key) < 1:
                raise ConfigError(f"config key {key}: must be >= 1, got {_get(self, key)}")
        for key in ("model.dropout", "task.word_dropout"):
            if not 0.0 <= _get(self, key) < 1.0:
                raise ConfigError(f"config key {key}: must be in [0, 1), "
                                  f"got {_get(self, key)}")
        if not self.task.lm_weight >= 0:
            raise ConfigError(f"config key task.lm_weight: must be >= 0, "
                              f"got {self.task.lm_weight}")
        if self.optim.lr <= 0:
            raise ConfigError(f"config key optim.lr: must be > 0, got {self.optim.lr}")
        if self.model.tie_weights and self.model.embed_size != self.model.hidden_size:
            raise ConfigError(f"config key model.tie_weights: needs embed_size == "
                              f"hidden_size, got {self.model.embed_size} and "
                              f"{self.model.hidden_size}")
        return self


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


def config_from_dict(obj, base=None):
    """Apply a nested dict (``{"model": {"hidden_size": 200}}``) on top of ``base``
    (default: all defaults); unknown sections or keys raise ConfigError."""
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


def load_toml(path, base=None):
    """Read a TOML config file on top of ``base``."""
    try:
        with open(path, "rb") as f:
            obj = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    try:
        return config_from_dict(obj, base)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _parse_value(text):
    """A command-line value as TOML (numbers, true/false, strings) else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _resolve_key(key):
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
        path = _resolve_key(key)
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
