"""The training, validation and benchmark nodes with the real GRPOTrainer on the tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from transformers import TrainerState

from grpo_pipeline.config.run_config import RunConfig, resolve_run_config
from grpo_pipeline.config.schema import ValidationParams
from grpo_pipeline.evaluation import Evaluator
from grpo_pipeline.io.checkpoint_dataset import HFCheckpointDataset
from grpo_pipeline.models.loading import load_causal_lm, loading_choices
from grpo_pipeline.pipelines.grpo.nodes import benchmark_run, check_validation, train_grpo, validate_checkpoint
from grpo_pipeline.rewards import REWARD_FUNCTIONS, RewardError
from grpo_pipeline.rewards.arithmetic import format_reward
from grpo_pipeline.training.checkpoints import complete_checkpoints
from grpo_pipeline.training.mlflow_logging import MlflowStepMetricsCallback
from grpo_pipeline.training.run import TrainingRequest, build_trainer, train
from grpo_pipeline.validation import answer_spread, failures_of
from grpo_pipeline.validation_report import FAILED, PASSED, status_of, thresholds_of

REWARD = {"functions": ["accuracy", "format", "length"]}
# A few steps leave the tiny model answering every prompt alike: these tests are about the mechanics, so the
# collapse checks are off (test_a_collapsed_model_fails_validation_whatever_the_gates covers them).
VALIDATION = {"max_prompts": 8, "max_new_tokens": 6, "max_same_answer_share": None, "max_no_answer_share": None}


def training_params(output_dir: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir),
        "learning_rate": 3e-3,
        "max_steps": 4,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 6,
        "use_cpu": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "lr_scheduler_type": "constant",
        **overrides,
    }


def run_config(
    output_dir: Path,
    reward: dict[str, Any] = REWARD,
    validation: dict[str, Any] = VALIDATION,
    peft: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    seed: int = 0,
    **training: Any,
) -> RunConfig:
    """A run configuration as a variant's parameters resolve to one (the model path is the node's input)."""
    raw = {
        "seed": seed,
        "model": {"name_or_path": "x"},
        "peft": peft,
        "formatting": {"max_prompt_length": 256},
        "reward": reward,
        "training": training_params(output_dir, **training),
        "run": run or {},
        "validation": validation,
        "benchmark": {"mode": "debug"},
    }
    return resolve_run_config(raw, "debug")


def train_and_save(
    tiny_model_dir: Path,
    train_dataset: pd.DataFrame,
    output: Path,
    peft: dict[str, Any] | None = None,
    reward: dict[str, Any] = REWARD,
    run: dict[str, Any] | None = None,
    **training_overrides: Any,
) -> tuple[HFCheckpointDataset, Any, pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """``train_grpo`` on the tiny model with the checkpoint saved to ``output/checkpoint``, and its outputs."""
    checkpoint, metrics, timings, samples = train_grpo(
        train_dataset,
        train_dataset.head(8),  # scored only when training.eval_strategy asks for it
        str(tiny_model_dir),
        run_config(output / "trainer", reward, peft=peft, run=run, **training_overrides),
    )
    dataset = HFCheckpointDataset(path=str(output / "checkpoint"))
    dataset.save(checkpoint)
    return dataset, checkpoint, metrics, timings, samples


def weights_changed(tiny_model_dir: Path, model: torch.nn.Module) -> bool:
    base = load_causal_lm(tiny_model_dir).state_dict()
    tuned = model.state_dict()
    return any(not torch.equal(base[name], tuned[name]) for name in base)


@pytest.fixture(scope="module")
def trained(
    tiny_model_dir: Path, datasets: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
):
    return train_and_save(tiny_model_dir, datasets[0], tmp_path_factory.mktemp("train"))


@pytest.mark.trainer
def test_training_records_per_step_metrics(trained: Any) -> None:
    _, checkpoint, metrics, timings, _ = trained
    assert metrics["step"].tolist() == [1, 2, 3, 4]
    for column in (
        "reward",
        "reward_std",
        "loss",
        "completions/mean_length",
        "entropy",
        "step_time",
        "rewards/accuracy/mean",
        "rewards/format/mean",
        "rewards/length/mean",
    ):
        assert column in metrics, column
    assert metrics["reward"].between(0, 1).all()
    assert timings["steps"] == 4 and 0 < timings["shares"]["generation"] < 1
    assert timings["generated_tokens"] > 0 and timings["peak_rss_mb"] > 0
    assert checkpoint.trainer_state["global_step"] == 4


@pytest.mark.trainer
def test_training_changes_the_weights(trained: Any, tiny_model_dir: Path) -> None:
    assert weights_changed(tiny_model_dir, trained[0].load().model)


@pytest.mark.trainer
def test_kl_is_logged_when_beta_is_positive(tiny_model_dir: Path, datasets: Any, tmp_path: Path) -> None:
    _, metrics, _, _ = train_grpo(
        datasets[0],
        datasets[1],
        str(tiny_model_dir),
        run_config(tmp_path, max_steps=2, beta=0.04, reward=REWARD),
    )
    assert "kl" in metrics and metrics["kl"].notna().all()


@pytest.mark.trainer
def test_checkpoint_is_a_standard_hf_directory_that_reloads_and_generates(trained: Any) -> None:
    dataset = trained[0]
    path = Path(dataset._describe()["path"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"} <= {
        p.name for p in path.iterdir()
    }
    assert not list(path.glob("*.bin"))
    reloaded = dataset.load()
    inputs = reloaded.tokenizer(["<|user|>What is 1 + 1?<|end|><|assistant|>"], return_tensors="pt")
    output = reloaded.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.trainer
def test_validation_compares_with_base_model(trained: Any, datasets: Any, tiny_model_dir: Path) -> None:
    report, markdown = validate_checkpoint(trained[0].load(), str(tiny_model_dir), datasets[1], run_config(Path("out")))
    assert report["eval_prompts"] == 8 and report["status"] == "NO GATE" and report["passed"] is None
    assert "no gate set: nothing checked" in markdown and "PASSED" not in markdown
    assert report["reward_gain"] == pytest.approx(report["trained"]["mean_reward"] - report["base"]["mean_reward"])
    assert set(report["trained"]["rewards"]) == {"accuracy", "format", "length"}
    recomputed = format_reward([s["trained_completion"] for s in report["samples"]])
    assert len(recomputed) == len(report["samples"]) == 5
    assert "# Checkpoint validation" in markdown and "| trained |" in markdown


@pytest.mark.trainer
def test_validation_fails_below_threshold(trained: Any, datasets: Any, tiny_model_dir: Path) -> None:
    report, markdown = validate_checkpoint(
        trained[0].load(),
        str(tiny_model_dir),
        datasets[1],
        run_config(Path("out"), validation={**VALIDATION, "min_eval_reward": 3.5}),
    )
    # The failing report, with the samples that explain it, is returned (saved) before the run fails.
    assert report["passed"] is False and report["samples"] and "**FAILED**: mean eval reward" in markdown
    with pytest.raises(ValueError, match=r"mean eval reward .* < validation.min_eval_reward=3.5"):
        check_validation(report, {})


@pytest.mark.trainer
def test_validation_reports_greedy_and_sampled_accuracy_and_gates_on_them(
    trained: Any, datasets: Any, tiny_model_dir: Path
) -> None:
    checkpoint = trained[0].load()
    assert checkpoint.trainer_state["sampling"]["temperature"] == 1.0  # recorded by training
    gated = {**VALIDATION, "accuracy_reward": "accuracy", "sampled_completions": 4, "min_greedy_accuracy_gain": 0.9}
    report, markdown = validate_checkpoint(
        checkpoint, str(tiny_model_dir), datasets[1], run_config(Path("out"), validation=gated, seed=3)
    )
    for model in ("base", "trained"):
        sampled = report[model]["sampled"]
        assert report[model]["accuracy"] == report[model]["rewards"]["accuracy"]
        assert sampled["completions_per_prompt"] == 4 and sampled["accuracy"] == sampled["rewards"]["accuracy"]
    gains = report["accuracy_gain"]
    assert gains["sampled"] == report["trained"]["sampled"]["accuracy"] - report["base"]["sampled"]["accuracy"]
    assert report["passed"] is False and "greedy accuracy gain over the base model" in markdown
    assert "| trained | sampled |" in markdown and "held-out sampled accuracy (accuracy)" in markdown
    again, _ = validate_checkpoint(
        checkpoint, str(tiny_model_dir), datasets[1], run_config(Path("out"), validation=gated, seed=3)
    )
    assert again["trained"]["sampled"] == report["trained"]["sampled"]  # the seed fixes the samples


@pytest.mark.trainer
def test_validation_fails_on_nan_weights(trained: Any, datasets: Any, tiny_model_dir: Path) -> None:
    checkpoint = trained[0].load()
    with torch.no_grad():
        checkpoint.model.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    report, _ = validate_checkpoint(checkpoint, str(tiny_model_dir), datasets[1], run_config(Path("out")))
    with pytest.raises(ValueError, match="NaN"):
        check_validation(report, {})


def test_a_collapsed_model_fails_validation_whatever_the_gates() -> None:
    """A model that answers "2" to every question passed a gate of min_greedy_accuracy_gain 0.0 (0.000 -> 0.000)
    and was registered; one with no answer at all passed with no gate (NO GATE)."""
    gated = ValidationParams(max_new_tokens=4, accuracy_reward="accuracy", min_greedy_accuracy_gain=0.0)
    questions = range(200)
    base = {
        "finite": True,
        "mean_reward": 0.0,
        "accuracy": 0.0,
        "answers": answer_spread([str(n) for n in questions], None),
    }
    collapsed = {**base, "answers": answer_spread([[{"role": "assistant", "content": " 2"}] for _ in questions], None)}
    failures = failures_of(base, collapsed, None, gated)
    assert status_of(failures, thresholds_of(gated)) == FAILED
    assert failures == [
        "the trained model gives the same answer, '2', to 100% of the held-out prompts "
        "(validation.max_same_answer_share=0.8): it has collapsed"
    ]
    assert (
        status_of(failures_of(base, base, None, gated), thresholds_of(gated)) == PASSED
    )  # as many answers as questions
    ungated = ValidationParams(max_new_tokens=4, answer_pattern=r"\d+")
    silent = {**base, "answers": answer_spread(["I cannot say."] * 150 + ["7"] * 50, r"\d+")}
    (failure,) = failures_of(base, silent, None, ungated)
    assert status_of([failure], thresholds_of(ungated)) == FAILED and failure.startswith(
        "the trained model gives no answer to 75%"
    )
    checks_off = ValidationParams(max_new_tokens=4, max_same_answer_share=None, max_no_answer_share=None)
    assert failures_of(base, collapsed, None, checks_off) == [] and failures_of(base, silent, None, checks_off) == []


# The held-out prompts scored every two steps, the best checkpoint the one with the best training reward.
BEST_BY_REWARD_EVERY_TWO_STEPS = {"eval_strategy": "steps", "eval_steps": 2, "metric_for_best_model": "reward"}


@pytest.mark.trainer
def test_best_checkpoint_selection_hands_the_best_checkpoint_to_validation(
    tiny_model_dir: Path, datasets: Any, tmp_path: Path
) -> None:
    dataset, checkpoint, metrics, _, _ = train_and_save(
        tiny_model_dir,
        datasets[0],
        tmp_path,
        max_steps=6,
        **BEST_BY_REWARD_EVERY_TWO_STEPS,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        greater_is_better=False,  # the worst reward: an early checkpoint, so not the last step's weights
    )
    state = checkpoint.trainer_state
    evaluations = metrics.dropna(subset=["eval/reward"]).set_index("step")["eval/reward"]
    assert list(evaluations.index) == [2, 4, 6]
    best_step = int(Path(state["best_model_checkpoint"]).name.removeprefix("checkpoint-"))
    assert best_step < 6 and evaluations[best_step] == evaluations.min() == pytest.approx(state["best_metric"])
    best = load_file(Path(state["best_model_checkpoint"]) / "model.safetensors")
    final = load_file(tmp_path / "trainer" / "checkpoint-6" / "model.safetensors")
    validated = dataset.load().model.state_dict()
    assert all(torch.equal(validated[name], tensor) for name, tensor in best.items())
    assert any(not torch.equal(final[name], tensor) for name, tensor in best.items())


@pytest.mark.trainer
def test_save_strategy_best_trains_as_trl_does(tiny_model_dir: Path, datasets: Any, tmp_path: Path) -> None:
    # TRL (transformers) saves a checkpoint whenever the metric improves; each is a complete recovery checkpoint.
    _, checkpoint, _, _, _ = train_and_save(
        tiny_model_dir,
        datasets[0],
        tmp_path,
        max_steps=4,
        **BEST_BY_REWARD_EVERY_TWO_STEPS,
        save_strategy="best",
    )
    state = checkpoint.trainer_state
    assert state["global_step"] == 4 and state["best_model_checkpoint"] is not None
    saved = complete_checkpoints(tmp_path / "trainer")
    assert saved and Path(state["best_model_checkpoint"]).name in {folder.name for folder in saved}


@pytest.mark.trainer
def test_benchmark_row_has_the_seed_columns(trained: Any) -> None:
    table, markdown = benchmark_run(trained[3], run_config(Path("out")))
    assert list(table.columns[:4]) == ["mode", "steps", "wall_time_s", "s_per_step"]
    row = table.iloc[0]
    assert row["steps"] == 4 and row["s_per_step"] > 0
    assert row["step_s_min"] <= row["step_s_median"] <= row["step_s_max"]
    shares = [
        row[f"{phase}_share"] for phase in ("generation", "reward_scoring", "optimisation", "evaluation", "other")
    ]
    assert all(0 <= share <= 1 for share in shares) and sum(shares) == pytest.approx(1.0, abs=0.003)
    assert markdown.startswith("# GRPO benchmark")


def test_unknown_reward_fails_before_loading_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"functions\[0\]' \(corectness\): unknown reward function 'corectness'"):
        run_config(tmp_path, reward={"functions": ["corectness"]})


@pytest.mark.trainer
def test_trains_on_text_prompts(tiny_model_dir: Path, datasets: Any, tmp_path: Path) -> None:
    text_dataset = datasets[0].assign(prompt=datasets[0]["prompt_text"])
    _, metrics, _, _ = train_grpo(
        text_dataset,
        datasets[1],
        str(tiny_model_dir),
        run_config(tmp_path, max_steps=2, reward=REWARD),
    )
    assert metrics["step"].tolist() == [1, 2]
    assert metrics["completions/mean_length"].gt(0).all()


@pytest.mark.trainer
def test_training_keeps_sample_completions_with_their_rewards(trained: Any) -> None:
    samples = trained[4]
    # every 10 steps and at step 1; the fixture trains 4 steps
    assert {sample["step"] for sample in samples} == {1}
    assert len(samples) == 4
    for sample in samples:
        assert sample["prompt"].startswith("What is ")
        assert {"completion", "accuracy", "format", "length", "advantage"} <= set(sample)
        assert sample["format"] == pytest.approx(format_reward([sample["completion"]])[0], abs=1e-4)


def nan_from_step_two(completions: list[Any], trainer_state: Any, **kwargs: Any) -> list[float]:
    return [float("nan") if trainer_state.global_step >= 1 else 0.5 for _ in completions]


@pytest.mark.trainer
def test_a_nan_reward_stops_training_naming_reward_and_step(
    tiny_model_dir: Path, datasets: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REWARD_FUNCTIONS, "nan_from_step_two", nan_from_step_two)
    with pytest.raises(RewardError, match=r"Reward 'nan_from_step_two' returned nan at training step 2 on prompt"):
        train_grpo(
            datasets[0],
            datasets[1],
            str(tiny_model_dir),
            run_config(tmp_path, max_steps=3, reward={"functions": ["format", "nan_from_step_two"]}),
        )


@pytest.mark.trainer
def test_samples_show_the_scored_text_and_what_the_model_generated(
    trained: Any, datasets: Any, tiny_model_dir: Path
) -> None:
    special = ("<|end|>", "<pad>", "<|assistant|>", "<|user|>", "<|system|>", "<unk>")

    def without_special(text: str) -> str:
        for token in special:
            text = text.replace(token, "")
        return text

    for sample in trained[4]:
        assert without_special(sample["generated"]) == sample["completion"]
    report, _ = validate_checkpoint(trained[0].load(), str(tiny_model_dir), datasets[1], run_config(Path("out")))
    for sample in report["samples"]:
        assert without_special(sample["trained_generated"]) == sample["trained_completion"]


@pytest.mark.trainer
@pytest.mark.parametrize(
    ("training", "expected"),
    [
        (
            {"model_init_kwargs": {"attn_implementation": "eager"}, "activation_checkpointing": True},
            {"attn_implementation": "eager", "gradient_checkpointing": "True"},
        ),
        ({"activation_checkpointing": False}, {"attn_implementation": "sdpa", "gradient_checkpointing": "False"}),
        ({}, {"gradient_checkpointing": "True"}),  # TRL's default when the parameters say nothing
    ],
)
def test_model_loading_choices_reach_the_model_as_trl_loads_it(
    training: dict[str, Any], expected: dict[str, str], tiny_model_dir: Path, datasets: Any, tmp_path: Path
) -> None:
    config = run_config(tmp_path, reward={"functions": ["format"]}, max_steps=1, **training)
    request = TrainingRequest(datasets[0], str(tiny_model_dir), config)
    choices = loading_choices(train(request).trainer.model)
    assert choices | expected == choices and choices["dtype"] == "float32"


def test_step_metrics_reach_mlflow_every_flush_interval_training_and_evaluation_alike(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("flush")).info.run_id
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        callback = MlflowStepMetricsCallback(run_id, flush_seconds=0.0)
        state = TrainerState(global_step=1)
        callback.on_log(None, state, None, logs={"reward": 0.5, "loss": 0.1})  # type: ignore[arg-type]
        assert [point.value for point in client.get_metric_history(run_id, "reward")] == [0.5]
        state.global_step = 2
        callback.on_log(None, state, None, logs={"eval_reward": 0.7, "epoch": 1.0})  # type: ignore[arg-type]
        evaluated = [(point.step, point.value) for point in client.get_metric_history(run_id, "eval/reward")]
        assert evaluated == [(2, 0.7)]
        callback.on_log(None, state, None, logs={"train_runtime": 3.0})  # type: ignore[arg-type]
        assert not client.get_metric_history(run_id, "train_runtime")
    finally:
        mlflow.set_tracking_uri(previous_uri)


@pytest.mark.trainer
def test_a_sampling_option_trl_honours_changes_validations_samples_exactly_as_it_changes_trainings(
    tiny_model_dir: Path, datasets: Any, tmp_path: Path
) -> None:
    """Validation samples through the trainer's own generation: a GRPOConfig sampling field or a generation_kwargs
    entry reaches validation's samples as it reaches training's, token for token under one seed."""
    prompts = datasets[1]["prompt"].tolist()
    samples = 4

    def sampled_ids(**training: Any) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
        config = run_config(tmp_path / "out", validation={**VALIDATION, "sampled_completions": samples}, **training)
        request = TrainingRequest(datasets[0], str(tiny_model_dir), config)
        trainer, _ = build_trainer(request, None, request.fingerprint())
        trainer.model.train()
        torch.manual_seed(0)
        in_training = trainer._generate([prompt for prompt in prompts for _ in range(samples)])[1]
        evaluator = Evaluator(
            load_causal_lm(tiny_model_dir), trainer.processing_class, datasets[1], config, 6, [], TrainerState()
        )
        torch.manual_seed(0)
        in_validation = evaluator.complete(greedy=False, samples=samples).ids
        greedy = evaluator.complete(greedy=True).ids
        return in_training, in_validation, greedy

    default_training, default_validation, greedy = sampled_ids()
    assert default_validation == default_training
    for option in ({"top_k": 1}, {"generation_kwargs": {"top_k": 1}}):
        in_training, in_validation, _ = sampled_ids(**option)
        # top_k 1 samples the most likely token: every sample is the greedy completion, in training and validation.
        assert in_validation == in_training == [ids for ids in greedy for _ in range(samples)] != default_validation
