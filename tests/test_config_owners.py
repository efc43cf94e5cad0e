"""One definition per default, one name per quantity: every config reads its defaults from the one owner.

The owners: :class:`~quantnb.classifier.ModelConfig` (the TCN-LSTM's architecture),
:class:`~quantnb.classifier.TrainConfig` (the trainer), :class:`~quantnb.record.RecorderConfig`,
:class:`~quantnb.live.SessionSettings` and :class:`~quantnb.live.RiskLimits`, and
``agent._costs.DEFAULT_FEE_BPS`` (the taker fee). The stages keep flat parameters (the notebooks'
parameters cells, ``configs/*.yaml``, ``-p name=value``) and build the composed configs by name.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import pathlib

import pytest
import yaml

from quantnb.agent import VENUE_FEES, EnvSpec
from quantnb.agent._costs import DEFAULT_FEE_BPS
from quantnb.classifier import ModelConfig, TrainConfig
from quantnb.classifier._tcn_lstm import HybridTCNLSTM
from quantnb.live import RiskLimits, SessionSettings, Trader
from quantnb.record import RecorderConfig
from quantnb.stages.live import LiveParams
from quantnb.stages.optimization import OptimizationParams
from quantnb.stages.record import RecordParams
from quantnb.stages.training import _MODEL_DEFAULTS, TrainingParams
from quantnb.testing.binance_server import BinanceLoopbackServer

REPO = pathlib.Path(__file__).resolve().parents[1]
LIB = REPO / "lib" / "quantnb"


@functools.cache
def _lib_trees() -> tuple[tuple[pathlib.Path, ast.Module], ...]:
    """Every module of the library, parsed once for the two checks below."""
    return tuple((p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(LIB.rglob("*.py")))


def _owner_default(cls: type, name: str):
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _param_default(model: type, name: str):
    f = model.model_fields[name]
    return f.get_default(call_default_factory=True)


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


# (stage parameters, field) -> (owner, field): each default written in the owner only
READS = [
    *[(TrainingParams, n, TrainConfig, n) for n in ("epochs", "patience", "weight_decay", "seed", "log_every_batches")],
    *[(OptimizationParams, n, ModelConfig, n) for n in ("kernel_size", "n_blocks", "lstm_layers")],
    (OptimizationParams, "seed", TrainConfig, "seed"),
    *[(LiveParams, f.name, RiskLimits, f.name) for f in dataclasses.fields(RiskLimits)],
    *[(LiveParams, f.name, SessionSettings, f.name) for f in dataclasses.fields(SessionSettings)
      if f.name in LiveParams.model_fields],
    *[(RecordParams, f.name, RecorderConfig, f.name) for f in dataclasses.fields(RecorderConfig)
      if f.name in RecordParams.model_fields and f.name != "clickhouse_path"  # relative there, absolute here
      and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)],
]


@pytest.mark.parametrize(("params", "name", "owner", "owner_name"), READS,
                         ids=[f"{p.__name__}.{n}" for p, n, *_ in READS])
def test_stage_parameter_default_is_the_owners(params, name, owner, owner_name):
    assert _norm(_param_default(params, name)) == _norm(_owner_default(owner, owner_name))


def test_the_model_trainer_and_training_stage_share_one_architecture_default():
    sig = inspect.signature(HybridTCNLSTM.__init__).parameters
    arch = dataclasses.asdict(ModelConfig())
    assert {k: sig[k].default for k in arch} == arch  # HybridTCNLSTM(n_features) builds ModelConfig()
    assert {k: _MODEL_DEFAULTS[k] for k in arch} == arch  # the training stage's fallback without best params
    assert (_MODEL_DEFAULTS["lr"], _MODEL_DEFAULTS["batch_size"]) == (TrainConfig().lr, TrainConfig().batch_size)
    assert HybridTCNLSTM(4).config == {"n_features": 4, **arch, "n_classes": 3}


def test_the_trader_reads_the_session_defaults():
    sig = inspect.signature(Trader.__init__).parameters
    for f in dataclasses.fields(SessionSettings):
        if f.name in sig and sig[f.name].default is not inspect.Parameter.empty:
            assert sig[f.name].default == f.default, f.name


def test_fee_bps_is_one_name_with_one_default_the_venues_taker_fee():
    # https://www.binance.com/en/fee/futureFee: USD-M futures VIP 0 taker 0.0500 % = 5 bps
    assert DEFAULT_FEE_BPS == VENUE_FEES["binance_usdm"].fee_bps == 5.0
    assert EnvSpec.model_fields["fee_bps"].default == DEFAULT_FEE_BPS
    assert inspect.signature(BinanceLoopbackServer.__init__).parameters["fee_bps"].default == DEFAULT_FEE_BPS
    fee_names = set()
    for _, tree in _lib_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.arg | ast.Name | ast.Attribute):
                name = getattr(node, "arg", None) or getattr(node, "id", None) or getattr(node, "attr", "")
                if "fee" in name and name.endswith("_bps"):
                    fee_names.add(name)
    assert fee_names <= {"fee_bps", "maker_fee_bps", "DEFAULT_FEE_BPS"}, fee_names  # no taker_fee_bps, taker_bps...


# Names whose default is a number or a string written in a signature or a config class: where each may be.
OWNED = {
    **{n: {"classifier/_config.py:ModelConfig"} for n in dataclasses.asdict(ModelConfig())},
    **{n: {"classifier/_config.py:TrainConfig"} for n in ("epochs", "weight_decay", "log_every_batches")},
    "patience": {"classifier/_config.py:TrainConfig",
                 "stages/optimization.py:OptimizationParams"},  # a trial's budget, deliberately shorter
    "fee_bps": set(),  # DEFAULT_FEE_BPS, a module constant, is the one number
    "max_drawdown_frac": {"live/_risk.py:RiskLimits",
                          "live/_stats.py:SessionStats"},  # SessionStats: the drawdown measured, 0 before any bar
    **{n: {"live/_settings.py:SessionSettings"} for n in (
        "max_bad_bars", "max_order_rejections", "stale_warn_bars", "stale_emergency_bars", "stop_timeout_s")},
    **{n: {"record/_recorder.py:RecorderConfig"} for n in (
        "flush_every_s", "progress_every_s", "clickhouse_table", "binance_depth_speed")},
}


def _literal(node: ast.expr | None) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and node.value is not None and not isinstance(node.value, bool)


def _literal_defaults(path: pathlib.Path, tree: ast.Module) -> list[tuple[str, str]]:
    """(name, where) of every literal default in ``path``: function arguments, class fields, ``Field(<literal>)``."""
    rel, out = path.relative_to(LIB).as_posix(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults, strict=True))
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
            out += [(arg.arg, f"{rel}:{node.name}()") for arg, d in pairs if _literal(d)]
        elif isinstance(node, ast.ClassDef):
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                    v = st.value
                    if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "Field":
                        v = v.args[0] if v.args else None
                    if _literal(v):
                        out.append((st.target.id, f"{rel}:{node.name}"))
    return out


def test_no_owned_default_is_written_twice_in_the_library():
    found: dict[str, set[str]] = {n: set() for n in OWNED}
    for path, tree in _lib_trees():
        for name, where in _literal_defaults(path, tree):
            if name in found:
                found[name].add(where)
    assert {n: w for n, w in found.items() if w != OWNED[n]} == {}


def _yaml_steps(stage: str) -> list[dict]:
    steps = []
    for config in sorted((REPO / "configs").glob("*.yaml")):
        steps += [dict(s.get("params") or {}) for s in yaml.safe_load(config.read_text())["stages"]
                  if s["stage"] == stage]
    return steps


def _notebook_values(stage: str) -> dict:
    """The literal assignments of the notebook's parameters cell: what papermill and a person run with."""
    nb = json.loads((REPO / "notebooks" / f"{stage}.ipynb").read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}


def _resolved(values: dict, tmp_path: pathlib.Path) -> dict:
    """``${step.outputs.x}`` references made into plain values, as the pipeline does before validation."""
    def plain(k: str) -> str:  # a folder or file for *_dir/*_path, a run id otherwise
        return str(tmp_path / k) if k.endswith(("_dir", "_path")) else f"ref_{k}_20240101_000000"

    out = {k: (plain(k) if isinstance(v, str) and v.startswith("${") else v) for k, v in values.items()}
    return {**out, "project_dir": str(tmp_path)}


@pytest.mark.parametrize("stage", ["training", "optimization", "live", "record"])
def test_composed_configs_parse_the_flat_parameters_of_notebooks_and_yaml(stage, tmp_path):
    model = {"training": TrainingParams, "optimization": OptimizationParams, "live": LiveParams,
             "record": RecordParams}[stage]
    shown = {k: v for k, v in _notebook_values(stage).items() if k in model.model_fields}
    # the parameters cell shows the defaults as values: they must be the owners' (a drift would run silently)
    assert {k: _norm(v) for k, v in shown.items()} == {k: _norm(_param_default(model, k)) for k in shown}
    sources = [_notebook_values(stage), *_yaml_steps(stage)]
    for values in sources:
        values = _resolved(values, tmp_path)
        if stage == "live":
            values["train_id"] = values.get("train_id") or "agent_x_20240101_000000"
        p = model.parse(values)
        if stage == "live":
            s = p.session_settings()
            assert s.limits == RiskLimits(p.max_drawdown_frac, p.max_position_frac)
            assert all(getattr(s, f.name) == getattr(p, f.name) for f in dataclasses.fields(s)
                       if f.name in LiveParams.model_fields)
        elif stage == "record":
            cfg = p.recorder_config(tmp_path, raw_dir=tmp_path / "raw")
            assert all(_norm(getattr(cfg, n)) == _norm(getattr(p, n)) for n in RecordParams.model_fields
                       if n in RecorderConfig.__dataclass_fields__ and n not in ("symbols", "clickhouse_path"))
            assert cfg.symbols == tuple(s.upper() for s in p.symbols)
        elif stage == "training":
            assert {k: getattr(p, k) for k in ("epochs", "patience")} == {
                k: values.get(k, _owner_default(TrainConfig, k)) for k in ("epochs", "patience")}


def test_live_limits_are_checked_once_by_risk_limits_naming_the_field():
    from quantnb.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max_drawdown_frac=1\.5: must be in \(0, 1\)"):
        LiveParams.parse({"train_id": "agent_x_20240101_000000", "max_drawdown_frac": 1.5})
    with pytest.raises(ConfigError, match="max_position_frac"):
        LiveParams.parse({"train_id": "agent_x_20240101_000000", "max_position_frac": 6.0})
    with pytest.raises(ConfigError, match="confirm_live=True"):
        SessionSettings(mode="live")
