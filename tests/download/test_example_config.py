"""configs/example-binance.yaml validates step by step (it cannot run here: the real archive needs internet)."""

from __future__ import annotations

import re

import papermill
import pytest
import yaml

from quantnb.stages import params_class
from tests.conftest import REPO

CONFIG = REPO / "configs" / "example-binance.yaml"


def test_every_step_of_the_example_validates_and_its_outputs_feed_the_next(project):
    steps = yaml.safe_load(CONFIG.read_text())["stages"]
    assert [s["stage"] for s in steps][:3] == ["download", "download", "etl"]
    ids: list[str] = []
    params = {}
    ref_re = re.compile(r"\$\{([A-Za-z0-9_-]+)\.(run_id|outputs\.([A-Za-z0-9_]+))\}")

    def resolve(m: re.Match[str]) -> str:  # what the pipeline would put there once the earlier step ran
        ref, _, output = m.groups()
        assert ref in ids, f"{step['stage']} refers to {ref}, not an earlier step"
        if output == "labelled_dir":  # what the labelling stage records: <output_root>/<label suffix>
            return str(params[ref].labelled_dir(project))
        return f"runs/{ref}_20260101_000000/{output}.json" if output else f"{ref}_20260101_000000"

    for step in steps:
        values = yaml.safe_load(ref_re.sub(resolve, yaml.safe_dump(step["params"])))
        model = params_class(step["stage"]).parse({**values, "project_dir": str(project)}, source=str(CONFIG))
        ids.append(step.get("id", step["stage"]))
        params[ids[-1]] = model
        cell = set(papermill.inspect_notebook(str(REPO / "notebooks" / f"{step['stage']}.ipynb")))
        assert set(step["params"]) <= cell
    klines, funding, etl = params["download_klines"], params["download_funding"], params["etl"]
    assert (klines.end - klines.start).days + 1 == 92 and funding.data_type == "fundingRate"
    from quantnb.data._archive import plan_files

    planned = plan_files(klines.venue, klines.market, klines.data_type, klines.symbols, klines.start, klines.end)
    planned += plan_files(funding.venue, funding.market, funding.data_type, funding.symbols, funding.start,
                          funding.end)
    import fnmatch

    for f in planned:  # every downloaded file is an ETL input
        assert any(fnmatch.fnmatch(f"{klines.output_dir}/{f.path}", g) for g in etl.input_globs), f.path
    assert params["labelling"].input_glob.startswith(etl.output_dir + "/binance/usdm/BTCUSDT/")
    # later steps take the labelling's folder from what it recorded, never a typed folder name
    for step in steps:
        if step["stage"] in ("optimization", "training"):
            assert step["params"]["labelled_dir"] == "${labelling.outputs.labelled_dir}"


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_pipeline_validation_accepts_every_shipped_config(config, project):
    for step in yaml.safe_load(config.read_text())["stages"]:
        values = yaml.safe_load(re.sub(r"\$\{[A-Za-z0-9_-]+\.run_id\}", "x_20260101_000000",
                                       yaml.safe_dump(step.get("params") or {})))
        params_class(step["stage"]).parse({**values, "project_dir": str(project)}, source=str(config))
