"""``quantnb run <stage> --help``: the stage's description, parameters (type, default, help) and exit codes."""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import textwrap
import types
import typing
from typing import Any, NoReturn

from pydantic.fields import FieldInfo

from quantnb.config import StageParams
from quantnb.stages import STAGES, params_class

# ``x`` -> x; :func:`~a.b` -> b; :class:`a.B` -> a.B (numpy-style docstrings read as plain text)
_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
#: What ``quantnb run`` exits with (``runner._execute.EXIT_CODES`` plus refusals and SIGTERM).
EXIT_CODES_TEXT = ("0    completed (also with quarantined files)", "1    failed (the executed notebook shows the cell)",
                   "2    bad parameters: nothing ran", "130  interrupted (SIGINT); resume with --resume RUN_ID",
                   "143  interrupted (SIGTERM); resume with --resume RUN_ID")


def _plain(text: str) -> str:
    """Docstring text with reStructuredText roles and literals written plainly."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return " ".join([_type_name(base), *_bounds(meta)])
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    return re.sub(r"\b(?:typing|pathlib|annotated_types|quantnb(?:\.\w+)*)\.", "", str(annotation))


def _bounds(metadata: list[Any]) -> list[str]:
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return [f"{op} {getattr(m, k)}" for m in metadata for k, op in ops.items() if getattr(m, k, None) is not None]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):  # a component config: its fields are parameters of their own
        return f"{type(value).__name__}(...)"
    return repr(value)


def stage_help(stage: str, usage: str, width: int | None = None) -> str:
    """Return the help of ``quantnb run <stage>``: description, parameters, options, exit codes."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    cls = params_class(stage)
    module = importlib.import_module(STAGES[stage].split(":")[0])
    out = [usage.rstrip(), ""]
    for para in _plain(module.__doc__ or cls.__doc__ or "").strip().split("\n\n"):
        out += textwrap.wrap(" ".join(para.split()), width) + [""]
    common = set(StageParams.model_fields)
    for title, names in (("parameters (-p NAME VALUE, VALUE read as YAML; or a YAML mapping with -f FILE):",
                          [n for n in cls.model_fields if n not in common]),
                         ("run and logging parameters, common to every stage:",
                          [n for n in cls.model_fields if n in common])):
        out.append(title)
        for name in names:
            field = cls.model_fields[name]
            kind = " ".join([_type_name(field.annotation), *_bounds(field.metadata)])
            out.append(f"  {name} : {kind} = {_default(field)}")
            out += textwrap.wrap(_plain(field.description or ""), width, initial_indent="      ",
                                 subsequent_indent="      ")
        out.append("")
    out += ["options:",
            "  -p, --param NAME VALUE  a parameter (repeatable)",
            "  -f, --params-file FILE  YAML mapping of parameters",
            "  --resume RUN_ID         continue this run, skipping finished items",
            "  --root DIR              project directory (default: found from the cwd)",
            "  -q, --quiet             no live progress line",
            "  --log-output            stream the kernel's log lines here",
            "", "exit codes:"]
    out += [f"  {line}" for line in EXIT_CODES_TEXT]
    return "\n".join(out)


class StageHelpAction(argparse.Action):
    """``-h/--help`` of a stage's sub-command: print :func:`stage_help` (imports the stage only then)."""

    def __init__(self, option_strings: list[str], dest: str, stage: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)
        self.stage = stage

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        """Print the stage's help and exit 0."""
        print(stage_help(self.stage, parser.format_usage()))
        parser.exit()
