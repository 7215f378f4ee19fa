"""One training process under ``accelerate launch``: ``python -m grpo_pipeline.training.worker JOB.json``.

Started by :func:`grpo_pipeline.training.distributed.launch_training`; every rank trains, rank 0 alone
writes MLflow records, recovery-checkpoint markers and the results the Kedro node reads back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpo_pipeline.runtime import configure_runtime


def main(job_file: str) -> None:
    configure_runtime()
    import mlflow  # noqa: PLC0415 (after the runtime defaults, which the libraries read when imported)

    from grpo_pipeline.training.distributed import TrainingJob, write_results  # noqa: PLC0415 (same)
    from grpo_pipeline.training.run import train  # noqa: PLC0415 (same)

    job = TrainingJob.read(Path(job_file))
    is_rank_zero = int(os.environ.get("RANK", "0")) == 0
    if is_rank_zero and job.mlflow_tracking_uri:
        mlflow.set_tracking_uri(job.mlflow_tracking_uri)
    run = train(job.request, job.mlflow_run_id if is_rank_zero else None)
    model_dir = Path(job.result_dir).with_name("saved_model")
    # Every rank takes part: under ZeRO-3 or FSDP saving gathers the sharded weights.
    run.trainer.save_model(str(model_dir))
    if run.trainer.accelerator.is_main_process:
        write_results(Path(job.result_dir), model_dir, run)
    run.trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1])
