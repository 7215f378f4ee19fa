"""How the project is put together: a light start-up, library code free of Kedro wiring, variants written once."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_pipeline.config.loader import VariantExtendsError, load_parameters, with_variant_defaults
from grpo_pipeline.pipeline_registry import register_pipelines
from grpo_pipeline.variants import find_variants, unknown_variant, variant_names
from tests.conftest import PROJECT_ROOT, copy_project, invoke_kedro

PACKAGE = PROJECT_ROOT / "src" / "grpo_pipeline"
VARIANTS = ("debug", "full", "lora")
HEAVY_MODULES = ("torch", "transformers", "trl", "peft", "mlflow", "datasets")


def test_building_the_graph_imports_no_heavy_library() -> None:
    # What `kedro registry list`, `kedro viz` and the start of `kedro run` import: settings and the registry.
    probe = (
        "import json, sys\n"
        "import grpo_pipeline.settings\n"
        "from grpo_pipeline.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        f"print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


@pytest.mark.parametrize("layer", ["training", "models"])
def test_library_code_imports_no_kedro_wiring(layer: str) -> None:
    wiring = ("grpo_pipeline.io", "grpo_pipeline.pipelines", "grpo_pipeline.hooks", "kedro")
    offending = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in (PACKAGE / layer).rglob("*.py")
        for module in imported_modules(path)
        if module.startswith(wiring)
    }
    assert not offending


def test_only_a_pipeline_definition_imports_its_nodes() -> None:
    importers = {
        path.relative_to(PACKAGE).as_posix(): module
        for path in PACKAGE.rglob("*.py")
        for module in imported_modules(path)
        if module.endswith(".nodes") or ".nodes." in module
    }
    assert importers == {
        "pipelines/grpo/pipeline.py": "grpo_pipeline.pipelines.grpo.nodes",
        "pipelines/compare_runs/pipeline.py": "grpo_pipeline.pipelines.compare_runs.nodes",
    }


def test_variants_take_the_shared_defaults_under_their_own_values() -> None:
    parameters = {
        "variant_defaults": {
            "training": {"learning_rate": 1e-6, "output_dir": "data/06_models/{variant}/trainer_output"},
            "peft": None,
        },
        "full": None,  # a variant file's empty section: the defaults alone
        "lora": {"training": {"learning_rate": 1e-5}, "peft": {"r": 8}},
        "compare_runs": {"experiment_name": "grpo_pipeline"},
    }
    merged = with_variant_defaults(parameters, VARIANTS)
    assert merged["full"]["training"] == {"learning_rate": 1e-6, "output_dir": "data/06_models/full/trainer_output"}
    assert merged["lora"]["training"]["learning_rate"] == 1e-5 and merged["lora"]["peft"] == {"r": 8}
    assert merged["lora"]["training"]["output_dir"] == "data/06_models/lora/trainer_output"
    assert merged["compare_runs"] == parameters["compare_runs"]


def test_a_variant_that_extends_another_starts_from_its_values() -> None:
    parameters = {
        "variant_defaults": {"seed": 1, "training": {"learning_rate": 1e-6, "output_dir": "out/{variant}"}},
        "debug": {"model": {"name_or_path": "tiny"}, "training": {"learning_rate": 2e-4, "max_steps": 150}},
        "lora": {"extends": "debug", "peft": {"r": 8}, "training": {"learning_rate": 2e-3}},
    }
    lora = with_variant_defaults(parameters, VARIANTS)["lora"]
    assert "extends" not in lora and lora["seed"] == 1 and lora["model"] == {"name_or_path": "tiny"}
    assert lora["training"] == {"learning_rate": 2e-3, "output_dir": "out/lora", "max_steps": 150}
    for extends, message in (
        ("nope", r"'debug.extends' = 'nope' is not a variant"),
        ("lora", r"'lora.extends' = 'debug' closes a loop \(debug -> lora -> debug\)"),
    ):
        with pytest.raises(VariantExtendsError, match=message):
            with_variant_defaults({**parameters, "debug": {"extends": extends}}, VARIANTS)


def test_the_tiny_environment_runs_full_and_lora_as_debug_runs() -> None:
    tiny = load_parameters(PROJECT_ROOT / "conf", "tiny")
    same = ("data", "reward", "formatting", "seed", "run")
    for variant in ("full", "lora"):
        assert {key: tiny[variant][key] for key in same} == {key: tiny["debug"][key] for key in same}, variant
        # The same tiny model, built in the variant's own folder: no two variants write one folder.
        own_model = {**tiny["debug"]["model"], "name_or_path": f"data/06_models/{variant}/base_model"}
        assert tiny[variant]["model"] == own_model
        assert tiny[variant]["warm_start"]["output_dir"] == f"data/06_models/{variant}/warm_start"
    assert tiny["full"]["training"] == tiny["debug"]["training"] | {"output_dir": "data/06_models/full/trainer_output"}
    assert tiny["full"]["validation"] == tiny["debug"]["validation"]
    assert tiny["lora"]["validation"] == tiny["debug"]["validation"] | {"min_sampled_accuracy_gain": 0.1}
    assert tiny["lora"]["peft"]["r"] == 16 and tiny["lora"]["training"]["max_steps"] == 300
    assert tiny["full"]["benchmark"]["mode"] == "full" and tiny["lora"]["benchmark"]["mode"] == "LoRA"


def test_environment_and_runtime_parameters_apply_before_the_defaults() -> None:
    conf = PROJECT_ROOT / "conf"
    runtime = {"variant_defaults": {"seed": 7}, "full": {"training": {"max_steps": 3}}}
    gpu = load_parameters(conf, "gpu", runtime)
    assert gpu["full"]["training"]["bf16"] is True and gpu["full"]["training"]["max_steps"] == 3
    assert gpu["lora"]["training"]["learning_rate"] == 1e-5 and gpu["lora"]["training"]["max_steps"] == -1
    assert {gpu[variant]["seed"] for variant in variant_names(conf)} == {7}
    assert load_parameters(conf, "base")["debug"]["training"]["bf16"] is False  # base is the CPU site


def test_every_node_takes_its_data_and_the_run_configuration_only() -> None:
    for name, pipeline in register_pipelines().items():
        for node in pipeline.nodes:
            assert len(node.inputs) <= 5, (name, node.name, node.inputs)
            parameters = [dataset for dataset in node.inputs if dataset.startswith("params:")]
            assert parameters in ([], [f"params:{node.namespace}"], ["params:compare_runs"]), (node.name, parameters)


def test_variants_are_the_folders_of_conf_that_define_one(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    for folder, content in (
        ("base/debug", "debug: {seed: 1}\n"),
        ("base/compare_runs", "compare_runs: {}\n"),  # the comparison's own folder: not a variant
        ("base/notes", "something_else: {}\n"),  # a folder without its own section: not a variant
        ("gpu/big", "big: {seed: 2}\n"),
    ):
        (conf / folder).mkdir(parents=True)
        (conf / folder / "parameters.yml").write_text(content)
    (conf / "base/parameters.yml").write_text("variant_defaults: {seed: 0}\n")
    (conf / "local").mkdir()
    assert find_variants(conf) == {"big": [conf / "gpu/big"], "debug": [conf / "base/debug"]}
    assert list(find_variants(conf, ["base", "local"])) == ["debug"]
    # The loader merges the defaults under the variants of the environments it reads.
    assert load_parameters(conf, "gpu")["big"] == {"seed": 2} and "big" not in load_parameters(conf)
    assert "no variant 'bgi' in conf/: the variants are grpo_big (conf/gpu/big), grpo_debug (conf/base/debug)" in (
        unknown_variant("bgi", conf) or ""
    )


@pytest.mark.kedro_run
def test_a_variant_of_an_environment_the_run_does_not_read_is_named_with_the_way_to_run_it(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    shutil.copytree(project / "conf/base/debug", project / "conf/gpu/mine")
    parameters = project / "conf/gpu/mine/parameters.yml"
    parameters.write_text(parameters.read_text().replace("\ndebug:\n", "\nmine:\n"))
    result = invoke_kedro(project, "run", "--pipelines=grpo_mine")
    assert result.returncode == 1
    assert (
        "variant 'mine' is defined in conf/gpu/mine, which this run does not read (it reads conf/base and "
        "conf/local): run it with --env=gpu" in result.stderr
    )
    assert not (project / "data/02_intermediate/mine").exists()
