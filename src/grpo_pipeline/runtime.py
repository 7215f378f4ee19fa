"""Process-wide defaults for the project's entry points (Kedro's ``settings.py`` and the training worker).

Library modules never set warning filters or environment variables when imported; the entry points
call :func:`configure_runtime` once, before the libraries these settings affect are imported.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# Known-harmless warnings from dependencies, silenced one by one by message (never wholesale):
# OmegaConf's resolver rename (raised inside kedro and kedro-mlflow), mlflow's pyfunc type-hint advice for
# kedro-mlflow's model class, TRL 1.16 reading transformers' renamed `is_gradient_checkpointing`, and TRL 1.16's
# own configs defaulting `gradient_checkpointing=True`, which transformers 5 renamed `activation_checkpointing`.
IGNORED_WARNINGS = (
    r"register_new_resolver\(\) is deprecated",
    r".*Add type hints to the `predict` method",  # mlflow colours it: the message starts with an ANSI code
    r"`is_gradient_checkpointing` is deprecated",
    r"`gradient_checkpointing` is deprecated and will be removed in v6",
)

# Messages from dependencies that tell a person watching a run nothing, by the logger that logs them: demoted to
# DEBUG, so the log file keeps them and the terminal (INFO and above, conf/logging.yml) does not show them.
LOG_FILE_ONLY = {
    "py.warnings": (r"Hint: Inferred schema contains integer column",),  # MLflow, logging a data source's schema
    "mlflow.transformers": (  # MLflow's transformers flavour, registering a checkpoint from disk
        r"The model card could not be",
        r"Unable to find license information",
    ),
}

ENVIRONMENT_DEFAULTS = {
    # transformers' per-file bars ("Loading weights", "Writing model shards") repeat for every model the
    # pipeline loads or saves; the training progress bar is the one a person follows. Read by
    # huggingface_hub when first imported.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # datasets' bar per map (the warm start's "Tokenizing train dataset", ...), for the same reason.
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    # TRL flags rollout_func as experimental on every run; the project pins TRL 1.16's contract instead.
    "TRL_EXPERIMENTAL_SILENCE": "1",
    # MLflow gives its loggers a stderr handler of its own ("Creating initial MLflow database tables..."); without
    # it they reach the project's logging (conf/logging.yml: warnings to the terminal, the rest to the log file).
    "MLFLOW_CONFIGURE_LOGGING": "false",
    # A tracking server that stops answering ends the run within minutes (tracking_store.lost_server), not after
    # MLflow's default 7 retries of 120 s each (~15 minutes for a machine that went down): 4 retries over ~30 s of
    # backoff, 60 s to answer each.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def _not_ignored(record: logging.LogRecord) -> bool:
    # A captured warning's record reads "path:line: Category: message": the message is searched for inside it.
    return not any(re.search(message, record.getMessage()) for message in IGNORED_WARNINGS)


# Shown once, then demoted like LOG_FILE_ONLY: urllib3's warning on each retry of a request (MLflow retries each
# request to a tracking server that does not answer: a block of a dozen lines on the terminal per retry).
LOG_FILE_AFTER_THE_FIRST = {"urllib3.connectionpool": (r"^Retrying \(",)}


class _ToLogFile(logging.Filter):
    def __init__(self, messages: tuple[str, ...], after_the_first: bool = False) -> None:
        super().__init__()
        self.messages = messages
        self.shown = not after_the_first  # whether one was shown

    def filter(self, record: logging.LogRecord) -> bool:
        if any(re.search(message, record.getMessage()) for message in self.messages):
            if self.shown:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            self.shown = True
        return True


def configure_runtime() -> None:
    """Apply :data:`IGNORED_WARNINGS` and :data:`ENVIRONMENT_DEFAULTS` (a variable already set is kept)."""
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    # kedro-mlflow puts `simplefilter("once", UserWarning)` before these filters when imported, so the warnings it
    # then raises still reach the log (Kedro captures warnings into the `py.warnings` logger): filtered there too.
    logging.getLogger("py.warnings").addFilter(_not_ignored)
    for name, messages in LOG_FILE_ONLY.items():
        logging.getLogger(name).addFilter(_ToLogFile(messages))
    for name, messages in LOG_FILE_AFTER_THE_FIRST.items():
        logging.getLogger(name).addFilter(_ToLogFile(messages, after_the_first=True))
    for name, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
