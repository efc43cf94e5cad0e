"""The Examples of every stage entry point are honest: their parameters validate, their result attributes exist."""

from __future__ import annotations

import ast
import dataclasses
import doctest
import importlib
import typing

import pytest

STAGES = ("etl", "labelling", "optimization", "training", "agent", "live", "record", "download", "postmortem")


def _example_source(stage: str) -> tuple[object, str]:
    module = importlib.import_module(f"quantnb.stages.{stage}")
    doc = getattr(module, f"run_{stage}").__doc__ or ""
    assert "Examples\n" in doc, f"run_{stage} has no Examples section"
    return module, "\n".join(e.source for e in doctest.DocTestParser().get_examples(doc))


@pytest.mark.parametrize("stage", STAGES)
def test_the_example_of_each_stage_builds_valid_params_and_reads_attributes_its_result_has(stage, project,
                                                                                            monkeypatch):
    module, source = _example_source(stage)
    monkeypatch.chdir(project)  # relative paths of the example resolve in a project, as in a notebook
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "").endswith("Params")]
    assert calls, f"run_{stage}'s example builds no parameters"
    names = {**vars(module), "base_url": "http://127.0.0.1:9", "project": str(project)}  # the download example's
    for call in calls:  # raises ConfigError/ValidationError if the example's parameters are wrong
        params = eval(compile(ast.Expression(call), f"run_{stage} example", "eval"), names)  # noqa: S307
        assert type(params).__name__ == call.func.id
    result_cls = typing.get_type_hints(getattr(module, f"run_{stage}"))["return"]
    fields = {f.name for f in dataclasses.fields(result_cls)} if dataclasses.is_dataclass(result_cls) else set()
    read = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "result"}
    missing = {a for a in read if a not in fields and not hasattr(result_cls, a)}
    assert not missing, f"run_{stage}'s example reads result.{sorted(missing)}, which {result_cls.__name__} lacks"


def test_the_check_fails_on_an_example_with_a_wrong_parameter(project, monkeypatch):
    module = importlib.import_module("quantnb.stages.etl")
    call = ast.parse("EtlParams(n_workerz=2)").body[0].value  # type: ignore[attr-defined]
    monkeypatch.chdir(project)
    with pytest.raises(Exception, match="n_workerz"):
        eval(compile(ast.Expression(call), "bad example", "eval"), vars(module))  # noqa: S307
