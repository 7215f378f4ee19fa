"""LoRA through peft: what changes, what is saved, and the merged export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.transformers
import pytest
import torch
from mlflow.tracking import MlflowClient

from grpo_pipeline.errors import ParameterError
from grpo_pipeline.models.loading import load_causal_lm, loading_choices
from grpo_pipeline.models.registry import register_validated_model
from grpo_pipeline.pipelines.grpo.nodes import benchmark_run, validate_checkpoint
from tests.conftest import greedy_answers, inside
from tests.test_training_and_validation import VALIDATION, run_config, train_and_save

PEFT = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear", "merge_and_export": True}


@pytest.fixture(scope="module")
def lora_checkpoint(tiny_model_dir: Path, datasets: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    dataset, _, _, timings, _ = train_and_save(
        tiny_model_dir, datasets[0], tmp_path_factory.mktemp("lora"), peft=PEFT, learning_rate=1e-2
    )
    return dataset, timings


@pytest.mark.trainer
def test_adapter_weights_change_and_base_weights_do_not(lora_checkpoint: tuple, tiny_model_dir: Path) -> None:
    reloaded = lora_checkpoint[0].load()
    assert reloaded.is_adapter
    original = load_causal_lm(tiny_model_dir).state_dict()
    lora_b = {name: value for name, value in reloaded.model.state_dict().items() if "lora_B" in name}
    assert lora_b and any(value.abs().sum() > 0 for value in lora_b.values()), "LoRA B starts at zero and must move"
    base_layers = {
        name.replace("base_model.model.", "").replace(".base_layer", ""): value
        for name, value in reloaded.model.state_dict().items()
        if "lora_" not in name
    }
    assert set(original) <= set(base_layers)
    assert all(torch.equal(original[name], base_layers[name]) for name in original)


@pytest.mark.trainer
def test_checkpoint_holds_adapter_and_merged_export(lora_checkpoint: tuple) -> None:
    path = Path(lora_checkpoint[0]._describe()["path"])
    names = {item.name for item in path.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "merged"} <= names
    assert "model.safetensors" not in names
    assert (path / "merged" / "model.safetensors").is_file()


@pytest.mark.trainer
def test_merged_export_generates_what_base_plus_adapter_does(
    lora_checkpoint: tuple, datasets: Any, tiny_model_dir: Path
) -> None:
    report, markdown = validate_checkpoint(
        lora_checkpoint[0].load(), str(tiny_model_dir), datasets[1], run_config(Path("o"))
    )
    assert report["adapter"] is True
    assert report["merged_export"] == {"prompts": 8, "identical_greedy_generations": 8, "matches": True}
    assert report["trained_model"] == "merged export"  # the figures are those of the model the registry holds
    assert "LoRA merged export: identical greedy generations on 8/8" in markdown


@pytest.mark.trainer
def test_validation_loads_base_and_checkpoint_with_the_runs_model_init_kwargs(
    tiny_model_dir: Path, datasets: Any, tmp_path: Path
) -> None:
    # QLoRA's quantization_config needs a GPU; the attention implementation travels the same way and shows here.
    kwargs = {"model_init_kwargs": {"attn_implementation": "eager"}}
    dataset, checkpoint, _, _, _ = train_and_save(
        tiny_model_dir, datasets[0], tmp_path, peft={"r": 4}, max_steps=1, **kwargs
    )
    assert checkpoint.trainer_state["model_init_kwargs"]["attn_implementation"] == "eager"
    config = run_config(tmp_path / "trainer", peft={"r": 4}, max_steps=1, **kwargs)
    report, _ = validate_checkpoint(dataset.load(), str(tiny_model_dir), datasets[1], config)
    assert report["adapter"] is True and report["trained_model"] == "base+adapter"  # no merged export
    for model in ("base", "trained"):
        assert report["model_loading"][model]["attn_implementation"] == "eager", report["model_loading"]
    # Without the setting the model loads another implementation: the report shows the run's, not a default.
    assert loading_choices(load_causal_lm(tiny_model_dir))["attn_implementation"] != "eager"


@pytest.mark.trainer
@pytest.mark.parametrize("adapter", [{"trainable_token_indices": [5, 6]}, {"modules_to_save": ["lm_head"]}])
def test_an_adapter_on_the_tied_output_embedding_is_refused_before_the_first_step(
    adapter: dict[str, Any], tiny_model_dir: Path, datasets: Any, tmp_path: Path
) -> None:
    # TRL reads lm_head.weight directly: a wrapped head is never trained, or fails at step 1 with an AttributeError.
    with pytest.raises(ParameterError, match=r"\.peft': peft wraps the output embedding .* leave the head out"):
        train_and_save(tiny_model_dir, datasets[0], tmp_path, peft={"r": 4, **adapter}, max_steps=1)


@pytest.mark.trainer
def test_benchmark_reports_the_trainable_share(lora_checkpoint: tuple) -> None:
    table, _ = benchmark_run(lora_checkpoint[1], run_config(Path("o")))
    row = table.iloc[0]
    assert 0 < row["trainable_parameters"] < 0.5 * row["total_parameters"]
    assert row["trainable_share"] == pytest.approx(row["trainable_parameters"] / row["total_parameters"], abs=1e-4)


@pytest.mark.trainer
def test_a_validated_lora_checkpoint_is_registered_merged_with_its_adapter_beside_it(
    lora_checkpoint: tuple, datasets: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    checkpoint = lora_checkpoint[0].load()
    gated = run_config(Path("o"), validation={**VALIDATION, "min_eval_reward": -100.0})
    report, _ = validate_checkpoint(checkpoint, str(tiny_model_dir), datasets[1], gated)
    assert report["status"] == "PASSED"
    with inside(tmp_path):
        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        mlflow.set_experiment("registry")  # an earlier in-process run leaves another store's experiment active
        with mlflow.start_run() as run:
            record = register_validated_model(checkpoint, report, "tiny_lora", "validated", run.info.run_id)
        assert record["registered"] and record["version"] == 1 and record["model_uri"] == "models:/tiny_lora@validated"
        adapter = {Path(item.path).name for item in MlflowClient().list_artifacts(run.info.run_id, "adapter")}
        assert {"adapter_model.safetensors", "adapter_config.json"} <= adapter
        loaded = mlflow.transformers.load_model("models:/tiny_lora@validated", return_type="components")
    # The registered model is base+adapter merged: it answers as the validated adapter checkpoint does (greedy).
    prompts = datasets[1]["prompt_text"].head(len(report["samples"])).tolist()
    answers = greedy_answers(loaded["model"], loaded["tokenizer"], prompts, VALIDATION["max_new_tokens"])
    assert answers == [sample["trained_completion"] for sample in report["samples"]]
