"""The tutorial (docs/) agrees with its figure script and with the CLI, without running
either: every figure a page shows or links is written by a command of
``docs/make_figures.py``, that command is quoted on the same page, and every command a
page quotes is one the script runs and parses with rnnkit's own parser."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from rnnkit.cli import COMMANDS as CLI_COMMANDS
from rnnkit.cli import _build_config, _parse_overrides, build_parser

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FIGURE_LINK = re.compile(r"\]\((figures/[^)\s]+)\)")
PAGE_LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")
CODE_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def _script():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


def _quoted_commands(text):
    """The ``rnnkit ...`` lines of a page's bash blocks (continuation lines joined)."""
    commands = []
    for block in CODE_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("rnnkit "):
                commands.append(" ".join(line.split()))
    return commands


def _parse(command):
    """Parse ``command`` as ``rnnkit.cli.main`` would (for ``train`` also build and
    validate its config), without running it; raise on error."""
    words = shlex.split(command)
    assert words[0] == "rnnkit"
    try:
        args, extra = build_parser().parse_known_args(words[1:])
    except SystemExit as e:
        raise AssertionError(f"rnnkit's parser refused {command!r} (exit {e.code})")
    assert args.command is not None, command
    if extra:
        assert CLI_COMMANDS[args.command].overrides, f"unrecognized {extra} in {command!r}"
    if args.command == "train":  # the config it asks for: unknown keys, bad values raise
        _build_config(args, _parse_overrides(extra))
    return args


def test_pages_exist_and_are_in_the_nav():
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    assert len(PAGES) >= 12
    for page in PAGES:
        assert f": {page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_script_commands_parse():
    for command in SCRIPT.COMMANDS:
        _parse(command)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_commands_are_the_script_commands_and_parse(page, capsys):
    for command in _quoted_commands(page.read_text()):
        assert command in SCRIPT.COMMANDS, (
            f"{page.name} quotes a command docs/make_figures.py does not run: {command}")
        _parse(command)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_figures_are_made_by_a_command_quoted_on_the_page(page):
    text = page.read_text()
    quoted = _quoted_commands(text)
    for link in FIGURE_LINK.findall(text):
        name = link[len("figures/"):]
        makers = [c for c in SCRIPT.COMMANDS if name in SCRIPT.figures_of(c)]
        assert makers, f"{page.name} shows {link}, which docs/make_figures.py never writes"
        assert any(c in quoted for c in makers), (
            f"{page.name} shows {link} without quoting the command that makes it")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_links_resolve(page):
    for target, _ in PAGE_LINK.findall(page.read_text()):
        assert (DOCS / target).is_file(), f"{page.name} links to missing {target}"


def test_every_figure_of_the_script_is_shown_somewhere():
    shown = {link[len("figures/"):] for page in PAGES
             for link in FIGURE_LINK.findall(page.read_text())}
    made = {name for c in SCRIPT.COMMANDS for name in SCRIPT.figures_of(c)}
    assert made == shown


def test_committed_pngs_are_the_script_figures():
    """The PNGs in docs/figures/ (committed; see DEVELOPERS.md) are exactly the script's."""
    made = {name for c in SCRIPT.COMMANDS for name in SCRIPT.figures_of(c)
            if name.endswith(".png")}
    on_disk = {p.name for p in (DOCS / "figures").glob("*.png")}
    assert on_disk == made


def test_figure_outputs_go_to_docs_figures_and_runs_to_runs_docs():
    for command in SCRIPT.COMMANDS:
        words = shlex.split(command)
        for flag in ("--out", "--png", "--attention-png"):
            if flag in words:
                target = words[words.index(flag) + 1]
                assert target.startswith((SCRIPT.FIGURES_DIR + "/", SCRIPT.RUNS_DIR + "/")), (
                    f"{command!r} writes outside docs/figures and runs/docs")
