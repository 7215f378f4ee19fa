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
from pathlib import Path
from typing import Any

from grpo_pipeline.models.checkpoint import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, HFCheckpoint, merged_copy
from grpo_pipeline.validation_report import PASSED, gates_text, validation_metrics

logger = logging.getLogger(__name__)
# The flavour's requirements, written here: MLflow's inference of them imports every package of the process.
PIP_REQUIREMENTS = ("torch", "transformers", "safetensors")
MODEL_ARTIFACT = "model"
ADAPTER_ARTIFACT = "adapter"


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
        withdrawn = withdraw_alias(name, alias, run_id) if report.get("failures") else None
        return record | {"registered": False, "reason": reason, "alias_withdrawn_from_version": withdrawn}
    if run_id is None:
        return record | {"registered": False, "reason": "the run has no MLflow run to log the model to"}
    metrics = validation_metrics(report)
    model = checkpoint.model
    if checkpoint.is_adapter:
        model = checkpoint.merged_model or merged_copy(checkpoint.model)
    active = mlflow.active_run()
    # The run's own process logs into its open run; anything else (a notebook, a later process) reopens it.
    opened = contextlib.nullcontext() if active and active.info.run_id == run_id else mlflow.start_run(run_id=run_id)
    with opened:  # the run logged the validation's metrics when it saved the report (hooks.ReadableRunHooks)
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


def withdraw_alias(name: str, alias: str, run_id: str | None) -> int | None:
    """After a failed validation, ``models:/<name>@<alias>`` points nowhere until a validation passes again: the
    alias is removed and the version it pointed at tagged with the run that withdrew it; that version, or None."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 (see register_validated_model)
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no such model, or no such alias
        return None
    client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, version.version, "grpo.alias_withdrawn_by_run", str(run_id))
    logger.warning(
        "Withdrew models:/%s@%s from version %s, which stays registered: this run's validation failed, so the alias "
        "points nowhere until a validation passes",
        name,
        alias,
        version.version,
    )
    return int(version.version)


def _description(report: dict[str, Any], checkpoint: HFCheckpoint) -> str:
    kind = "LoRA adapter merged into its base" if checkpoint.is_adapter else "full model"
    return (
        f"GRPO checkpoint {Path(str(checkpoint.path)).name} (global step {report['global_step']}, {kind}) trained by "
        f"MLflow run {report.get('checkpoint_mlflow_run_id')}; validation PASSED ({gates_text(report)}) on "
        f"{report['eval_prompts']} held-out prompts."
    )
