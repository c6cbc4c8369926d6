"""Every command shown in README.md, docs/*.md and the ``--help`` texts parses, and the cheap offline ones run.

Commands are collected from fenced code blocks (``texturebias ...`` and ``torchrun ... -m texturebias ...``
lines, with ``\\`` continuations) and from back-quoted commands in each sub-command's description/epilog.
Each is parsed by the real parser (:func:`texturebias.cli.build_parser`), so a documented flag that does not
exist fails here; the ones that need nothing but the package run for real.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path

import pytest

from texturebias.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"```[A-Za-z]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`((?:torchrun [^`]*?-m )?texturebias [^`]+)`")
_ENV = re.compile(r"^[A-Z_]+=\S+$")

#: Documented commands that run offline in seconds (argv after ``texturebias``).
CHEAP = (
    ("models",),
    ("models", "bagnet*", "-v"),
    ("data", "list"),
    ("classify", "--samples"),
)


def _argv(line: str) -> list[str] | None:
    """The argv after ``texturebias`` of a documented shell line, or ``None`` when it is not a command."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words and _ENV.match(words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None
    if words[0] == "torchrun":
        if "-m" not in words or words.index("-m") + 1 >= len(words) or words[words.index("-m") + 1] != "texturebias":
            return None
        words = words[words.index("-m") + 1 :]
    if words[0] != "texturebias":
        return None
    for stop in ("|", "&&", ";", ">", "2>"):
        if stop in words:
            words = words[: words.index(stop)]
    # Environment variables become placeholders; a "..." word ("the rest as above") is kept to mark elision.
    return [os.path.expandvars(w).replace("$", "X") for w in words[1:]]


def _from_markdown() -> list[tuple[str, list[str]]]:
    found = []
    for md in DOCS:
        for block in _FENCE.findall(md.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                argv = _argv(line.strip().removeprefix("$ "))
                if argv:
                    found.append((f"{md.name}: {line.strip()[:70]}", argv))
    return found


def _from_help() -> list[tuple[str, list[str]]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        for text in (p.description or "", p.epilog or ""):
            for cmd in _INLINE.findall(text):
                argv = _argv(cmd)
                if argv:
                    found.append((f"{name} --help: {cmd[:70]}", argv))
    return found


DOCUMENTED = _from_markdown() + _from_help()


def test_commands_were_collected() -> None:
    where = {label.split(":")[0] for label, _ in DOCUMENTED}
    assert len(DOCUMENTED) >= 60
    assert {"README.md", "training.md", "texture.md", "train --help"} <= where


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert name in sub.choices, f"no command {name!r}"
    return sub.choices[name]


@pytest.mark.parametrize(
    ("label", "argv"), DOCUMENTED, ids=[label for label, _ in DOCUMENTED]
)  # fmt: skip
def test_documented_command_parses(label: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    elided = "..." in argv
    argv = [w for w in argv if w != "..."]
    if elided or len(argv) == 1:
        # An elided command (`torchrun ... -m texturebias train ...`) or a bare mention (`texturebias train`):
        # the command and every flag it names must exist; its required arguments are left out on purpose.
        command = _subparser(parser, argv[0])
        known = {s for action in command._actions for s in action.option_strings}
        unknown = [w.split("=")[0] for w in argv[1:] if w.startswith("--") and w.split("=")[0] not in known]
        assert not unknown, f"{label}: unknown flag(s) {unknown}"
        return
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"`texturebias {' '.join(argv)}` does not parse: {capsys.readouterr().err.strip()}")
    assert callable(args.func)


@pytest.mark.parametrize("argv", CHEAP, ids=" ".join)
def test_cheap_documented_commands_run(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    documented = {tuple(a) for _, a in DOCUMENTED}
    assert argv in documented, f"`texturebias {' '.join(argv)}` is no longer documented; update CHEAP"
    monkeypatch.chdir(ROOT)
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    assert "Traceback" not in err


def test_documented_analyze_runs_on_the_shared_data(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.environ.get("TEXTUREBIAS_DATA")
    if not data or not Path(data, "model-vs-human", "raw-data", "uniform-noise").is_dir():
        pytest.skip("needs $TEXTUREBIAS_DATA with model-vs-human/raw-data")
    runs = [a for _, a in DOCUMENTED if a[:1] == ["analyze"] and all("path/to" not in w for w in a)]
    assert runs
    monkeypatch.chdir(ROOT)
    for argv in runs:
        argv = [w.replace("../shared/data", data) for w in argv]
        if not all(Path(w).exists() for w in argv[1:] if not w.startswith("-")):
            continue
        assert main(argv) == 0, argv
        assert "error" not in capsys.readouterr().err
