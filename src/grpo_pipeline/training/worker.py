"""One training process under ``accelerate launch``: ``python -m grpo_pipeline.training.worker JOB.json``.

Started by :func:`grpo_pipeline.training.distributed.launch_training`; every rank trains, rank 0 alone
writes MLflow records and recovery-checkpoint markers, and rank 0 (on more than one machine: each
machine's first process) writes the results the Kedro node reads back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpo_pipeline.runtime import configure_runtime


def main(job_file: str) -> None:
    configure_runtime()
    import mlflow  # noqa: PLC0415 (after the runtime defaults, which the libraries read when imported)

    from grpo_pipeline.interruption import handle_stop_signals  # noqa: PLC0415 (same)
    from grpo_pipeline.models.checkpoint import save_weights  # noqa: PLC0415 (same)
    from grpo_pipeline.training.distributed import TrainingJob, write_results  # noqa: PLC0415 (same)
    from grpo_pipeline.training.run import train, writes_checkpoints  # noqa: PLC0415 (same)

    job = TrainingJob.read(Path(job_file))
    is_rank_zero = int(os.environ.get("RANK", "0")) == 0
    if is_rank_zero and job.mlflow_tracking_uri:
        mlflow.set_tracking_uri(job.mlflow_tracking_uri)
    # SIGTERM (forwarded by the launching process) stops training after a checkpoint, as in-process.
    with handle_stop_signals():
        run = train(job.request, job.mlflow_run_id if is_rank_zero else None)
    model_dir = Path(job.result_dir).with_name("saved_model")
    # Every rank takes part: under ZeRO-3 or FSDP saving gathers the sharded weights.
    run.trainer.save_model(str(model_dir))
    if writes_checkpoints(run.trainer) and not run.trainer.accelerator.is_main_process:
        # transformers 5 writes weights on global rank 0 only, whatever save_on_each_node says; this machine's
        # copy of the trained weights is written here.
        save_weights(run.trainer.accelerator.unwrap_model(run.trainer.model), model_dir)
    if writes_checkpoints(run.trainer):
        write_results(Path(job.result_dir), model_dir, run)
    run.trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    from grpo_pipeline.interruption import RunInterrupted

    try:
        main(sys.argv[1])
    except RunInterrupted as interrupted:
        # The launching process reports the interruption; a traceback per rank would only bury it.
        print(f"rank {os.environ.get('RANK', '0')}: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_code)
