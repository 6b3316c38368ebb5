"""Named configurations for ``rnnkit train --preset NAME``.

A preset is the TOML file ``NAME.toml`` in ``rnnkit/configs/``, read when it is asked
for: the files ship inside the package (so an installed rnnkit has them), and
``configs/`` at the root of a source checkout is a link to the same folder, so
``rnnkit train configs/NAME.toml`` and ``rnnkit train --preset NAME`` run the same file.
"""

from __future__ import annotations

from importlib import resources

from rnnkit.training.config import ConfigError, config_from_dict, read_toml

__all__ = ["preset_names", "preset_path", "preset_table", "preset_config"]


def _folder():
    return resources.files("rnnkit") / "configs"


def preset_names():
    """The names of the presets, sorted."""
    return sorted(p.name[:-len(".toml")] for p in _folder().iterdir()
                  if p.name.endswith(".toml"))


def preset_path(name):
    """The TOML file of preset ``name``; an unknown name raises ConfigError naming it."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(names)}")
    return _folder() / f"{name}.toml"


def preset_table(name):
    """The tables of preset ``name``, as read from its file."""
    return read_toml(preset_path(name))


def preset_config(name):
    """The Config of preset ``name``."""
    return config_from_dict(preset_table(name), where=f"preset {name!r}")
