"""The validated model in the MLflow model registry: where MLflow users look for the model a run made.

A checkpoint that passed validation is logged to its run as an MLflow ``transformers`` model (a LoRA checkpoint
as base+adapter merged into one model, with the adapter's own files logged beside it), registered under the
variant's name with the validation metrics as tags of the version, and given an alias (``validated``), so
``mlflow.transformers.load_model("models:/<name>@validated")`` loads it. A checkpoint that failed validation, or
one no gate checked, is not registered; the record says why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path
from typing import Any

from grpo_pipeline.models.checkpoint import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, HFCheckpoint, merged_copy
from grpo_pipeline.reporting import DECODINGS, PASSED, decoded_scores, gates_text

logger = logging.getLogger(__name__)
# The flavour's requirements, written here: MLflow's inference of them imports every package of the process.
PIP_REQUIREMENTS = ("torch", "transformers", "safetensors")
MODEL_ARTIFACT = "model"
ADAPTER_ARTIFACT = "adapter"


def validation_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The validation report's scores as flat, finite metrics, e.g. ``validation/trained/greedy/accuracy``."""
    metrics: dict[str, float | None] = {"validation/reward_gain": report["reward_gain"]}
    for model in ("base", "trained"):
        for decoding in DECODINGS:
            scores = decoded_scores(report[model], decoding) or {}
            prefix = f"validation/{model}/{decoding}"
            metrics[f"{prefix}/mean_reward"] = scores.get("mean_reward")
            metrics[f"{prefix}/accuracy"] = scores.get("accuracy")
    for decoding, gain in (report.get("accuracy_gain") or {}).items():
        metrics[f"validation/{decoding}_accuracy_gain"] = gain
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(value)}


def register_validated_model(
    checkpoint: HFCheckpoint, report: dict[str, Any], name: str, alias: str, run_id: str | None
) -> dict[str, Any]:
    """Log ``checkpoint`` to MLflow run ``run_id`` as a model, register it as ``name`` with alias ``alias`` when
    ``report`` says it passed validation; the record of what was done (or why not)."""
    import mlflow  # noqa: PLC0415 (MLflow's transformers flavour imports transformers)
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    record: dict[str, Any] = {"name": name, "alias": alias, "mlflow_run_id": run_id, "checkpoint": checkpoint.path}
    if report.get("status") != PASSED:
        reason = "validation failed" if report.get("failures") else "no validation gate was set, nothing was checked"
        logger.info("Not registering the checkpoint as '%s': %s", name, reason)
        return record | {"registered": False, "reason": reason}
    if run_id is None:
        return record | {"registered": False, "reason": "the run has no MLflow run to log the model to"}
    metrics = validation_metrics(report)
    model = checkpoint.model
    if checkpoint.is_adapter:
        model = checkpoint.merged_model or merged_copy(checkpoint.model)
    active = mlflow.active_run()
    # The run's own process logs into its open run; anything else (a notebook, a later process) reopens it.
    opened = contextlib.nullcontext() if active and active.info.run_id == run_id else mlflow.start_run(run_id=run_id)
    with opened:
        mlflow.log_metrics(metrics)
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": checkpoint.tokenizer},
            name=MODEL_ARTIFACT,
            task="text-generation",
            pip_requirements=list(PIP_REQUIREMENTS),
            metadata={"grpo.checkpoint": str(checkpoint.path), "grpo.adapter": checkpoint.is_adapter},
        )
        if checkpoint.is_adapter:  # the adapter's own files, as the checkpoint on disk holds them
            for file_name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                mlflow.log_artifact(str(Path(str(checkpoint.path)) / file_name), ADAPTER_ARTIFACT)
    printed = io.StringIO()  # MLflow prints "Successfully registered model ..." to stderr; said once, below
    with contextlib.redirect_stderr(printed):
        version = mlflow.register_model(
            info.model_uri,
            name,
            tags={**{key: str(value) for key, value in metrics.items()}, "grpo.mlflow_run_id": run_id},
        )
    logger.debug("mlflow.register_model: %s", printed.getvalue().strip())
    client = MlflowClient()
    client.update_model_version(name, version.version, _description(report, checkpoint))
    client.set_registered_model_alias(name, alias, version.version)
    logger.info("Registered the validated checkpoint as models:/%s@%s (version %s)", name, alias, version.version)
    return record | {
        "registered": True,
        "version": int(version.version),
        "model_uri": f"models:/{name}@{alias}",
        "logged_model_uri": info.model_uri,
        "adapter_artifacts": f"runs:/{run_id}/{ADAPTER_ARTIFACT}" if checkpoint.is_adapter else None,
        "metrics": metrics,
    }


def _description(report: dict[str, Any], checkpoint: HFCheckpoint) -> str:
    kind = "LoRA adapter merged into its base" if checkpoint.is_adapter else "full model"
    return (
        f"GRPO checkpoint {Path(str(checkpoint.path)).name} (global step {report['global_step']}, {kind}) trained by "
        f"MLflow run {report.get('checkpoint_mlflow_run_id')}; validation PASSED ({gates_text(report)}) on "
        f"{report['eval_prompts']} held-out prompts."
    )
