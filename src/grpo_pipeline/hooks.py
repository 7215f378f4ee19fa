"""Project hooks: every check before anything runs, one run per variant output, and a closing summary of the run.

The training libraries are imported inside the hooks that need them: Kedro imports this module (through
settings.py) for every command, including those that only read the pipeline graph.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from kedro.config import MissingConfigException
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from grpo_pipeline.config.run_config import forget_resolved, resolved_once
from grpo_pipeline.errors import ProjectError
from grpo_pipeline.interruption import (
    RunInterrupted,
    install_stop_signal_handlers,
    interrupted,
    interruption_of,
    restore_signal_handlers,
)
from grpo_pipeline.lineage import describe_source
from grpo_pipeline.preflight import preflight
from grpo_pipeline.prompts import SOURCE_ATTR, RawPrompts
from grpo_pipeline.run_lock import RunLock
from grpo_pipeline.tracking_store import (
    TrackingServerLostError,
    check_sqlite_store,
    check_tracking_server,
    drop_active_runs,
    forget_lost_server,
    lost_server,
    record_later,
    remove_if_unused,
    sqlite_store,
    unrecorded,
)
from grpo_pipeline.training.checkpoints import RUN_FINISHED_MARKER, CheckpointError, resolve_resume_checkpoint
from grpo_pipeline.variants import (
    DEFAULT_VARIANT,
    PIPELINE_TAG,
    SharedFolderError,
    find_variants,
    pipeline_name,
    shared_folder_problem,
)

logger = logging.getLogger(__name__)
# The catalog entry of each variant's data source (conf/base/catalog.yml, or the variant folder's own catalog.yml).
RAW_PROMPTS = "raw_prompts"
# The resolved parameters are long: conf/logging.yml sends this logger to the log file only (MLflow holds them too).
parameters_logger = logging.getLogger("grpo_pipeline.parameters")
# Kedro's account of a failed node and its `--from-nodes` advice: for an interrupted run, an ERROR and a second
# instruction above the one the project prints (what the same command will do, see RunChecksHooks).
KEDRO_FAILURE_LOGGERS = (
    "kedro.pipeline.node",
    "kedro.runner.sequential_runner",
    "kedro.runner.thread_runner",
    "kedro.runner.parallel_runner",
)


class _SilentOnInterrupt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not interrupted() and lost_server() is None


_silent_on_interrupt = _SilentOnInterrupt()


def _variants(pipeline: Pipeline) -> list[str]:
    return sorted({node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace})


class VariantNotReadError(ProjectError, ValueError):
    """A variant defined in an environment the run does not read."""


def variant_outside_environments(variant: str, env: str | None) -> str:
    """Where ``variant`` is defined and how to run it, for a run whose environments (base and ``env``) lack it."""
    folders = [folder.parent.name for folder in find_variants().get(variant, [])]
    return (
        f"variant '{variant}' is defined in {', '.join(f'conf/{name}/{variant}' for name in folders)}, which this run "
        f"does not read (it reads conf/base and conf/{env or 'local'}): run it with "
        f"--env={folders[0] if folders else '<env>'}, or move the folder to conf/base or conf/local"
    )


class RunChecksHooks:
    """Every check before the first node runs, then one run per variant output.

    For each variant: parse its parameters (logging the resolved values: shared defaults, the variant's
    own, schema defaults), check no other run holds its outputs, resolve every reward and check every row
    of the raw prompts (all problems in one message), and for training the rollout, vLLM and that an
    auto-resume would continue this very run. Only when every check passed are the variants' output locks
    taken (see run_lock.py), so nothing, the lock file included, is written on bad input; a tracking store
    kedro-mlflow created for a refused run is removed, and one that is not a database is refused before MLflow
    opens it, and a tracking server that does not answer is refused before anything runs. A run that finds its
    predecessor's MLflow run still RUNNING marks it KILLED (the process died without closing it), or records how it
    ended when that run could not (its tracking server stopped answering); an interrupted run ends its MLflow run
    KILLED, with the signal and step.
    """

    def __init__(self) -> None:
        self._locks: list[RunLock] = []
        self._new_store: Path | None = None
        self._resume_settings: dict[str, str | bool] = {}  # of each variant this run trains

    # tryfirst: before kedro-mlflow's hook opens the tracking store.
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        forget_lost_server()  # an earlier run's, in this process (a notebook's, a test's)
        setting = "server.mlflow_tracking_uri in conf/<env>/mlflow.yml"
        try:
            uri = (context.config_loader["mlflow"].get("server") or {}).get("mlflow_tracking_uri")
        except MissingConfigException:
            uri = None
        store = sqlite_store(uri)
        self._new_store = store if store is not None and not store.exists() else None
        if store is not None:
            check_sqlite_store(store, setting)
        check_tracking_server(uri, setting)

    # tryfirst: before kedro-mlflow's hook opens an MLflow run for a pipeline that will not run.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        try:
            self._check_and_lock(pipeline, catalog, run_params.get("env"))
        except BaseException:
            # A refused run leaves nothing behind: not even the tracking store kedro-mlflow created for it.
            self._release()
            if self._new_store is not None:
                remove_if_unused(self._new_store)
            raise

    def _check_and_lock(self, pipeline: Pipeline, catalog: DataCatalog, env: str | None) -> None:
        node_names = {node.name for node in pipeline.nodes}
        locks = []
        # Every variant this run's environments define, run or not: none may write where another writes.
        defined = {name: catalog.load(f"params:{name}") for name in find_variants() if f"params:{name}" in catalog}
        for variant in _variants(pipeline):
            if f"params:{variant}" not in catalog:
                raise VariantNotReadError(variant_outside_environments(variant, env))
            raw_params = defined.setdefault(variant, catalog.load(f"params:{variant}"))
            if problem := shared_folder_problem(variant, defined):
                raise SharedFolderError(problem)
            # A variant already running stops this run at once, before the (seconds-long) parameter checks;
            # an output_dir that is not a usable string fails those checks instead.
            output_dir = (raw_params.get("training") or {}).get("output_dir")
            if isinstance(output_dir, str) and output_dir:
                RunLock(output_dir, variant).check_free()
            # Logged as soon as they resolve, so that the log holds them whichever later check fails.
            parameters_logger.info(
                "Resolved parameters of variant '%s':\n%s",
                variant,
                yaml.safe_dump(
                    {variant: resolved_once(raw_params, variant).params.model_dump(mode="json")}, sort_keys=False
                ),
            )
            raw_prompts = _raw_prompts(catalog, variant) if f"{variant}.prepare_prompts" in node_names else None
            trains = f"{variant}.train_grpo" in node_names
            config = preflight(raw_params, variant, raw_prompts, trains=trains)
            locks.append(RunLock(config.grpo_config.output_dir, variant))
            if trains:
                self._resume_settings[variant] = config.params.run.resume_from_checkpoint
            if f"{variant}.run_config" in pipeline.inputs():
                # A run of some nodes only (--nodes, --from-nodes) without the one that resolves it: hand it over here.
                catalog.save(f"{variant}.run_config", config)
        for lock in locks:
            previous = lock.acquire()
            self._locks.append(lock)
            if previous.get("mlflow_run_id"):
                _close_previous_run(previous["mlflow_run_id"], previous.get(UNRECORDED_END))

    @hook_impl(trylast=True)
    def before_node_run(self, **kwargs: Any) -> None:
        import mlflow  # noqa: PLC0415 (see the module doc)

        run = mlflow.active_run()
        for lock in self._locks:
            if run is not None and lock.recorded("mlflow_run_id") != run.info.run_id:
                lock.record(mlflow_run_id=run.info.run_id)

    @hook_impl
    def after_pipeline_run(self, **kwargs: Any) -> None:
        self._release()

    # A wrapper: first, before any hook talks to MLflow, a lost tracking server is noticed (every later request is
    # then tried once, not for minutes); last, after kedro-mlflow ended its run FAILED (which an interrupted run was
    # not), even when it could not (the server lost).
    @hook_impl(wrapper=True)
    def on_pipeline_error(self, error: Exception, **kwargs: Any) -> Any:
        lost = lost_server(error)
        try:
            return (yield)
        finally:
            self._after_error(interruption_of(error), lost)

    def _after_error(self, interruption: RunInterrupted | None, lost: TrackingServerLostError | None) -> None:
        run_ids = {lock.recorded("mlflow_run_id") for lock in self._locks} - {None}
        if interruption is not None:
            for run_id in run_ids:
                _mark_killed(run_id, interruption)
        elif lost is not None:
            for run_id in run_ids:
                record_later(run_id, status="FAILED")
        if lost is not None:
            drop_active_runs()
        for lock in self._locks:
            if (end := unrecorded(lock.recorded("mlflow_run_id"))) is not None:
                lock.record(**{UNRECORDED_END: end})
        stopped = interruption or lost
        next_runs = [
            _next_run(lock.variant, self._resume_settings[lock.variant], lock.path.parent)
            for lock in self._locks
            if lock.variant in self._resume_settings
        ]
        if stopped is not None and next_runs:
            again = "Run the same command again" if lost is None else "Once the server answers, run the same command"
            stopped.what_next = f"{again}: {'; '.join(next_runs)}."
            logger.debug("%s", stopped.what_next)
        self._release()

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []
        self._resume_settings = {}
        forget_resolved()


def _next_run(variant: str, resume_setting: str | bool, output_dir: Path) -> str:
    """What the same command does with ``variant``'s training after an interruption, from what is on disk."""
    try:
        checkpoint = resolve_resume_checkpoint(resume_setting, output_dir)
    except CheckpointError as error:
        return f"{variant} would stop: {error}"
    if checkpoint is not None:
        return f"{variant} resumes training from {checkpoint}"
    if resume_setting is False:
        return f"{variant} trains afresh (run.resume_from_checkpoint is false)"
    if (output_dir / RUN_FINISHED_MARKER).is_file():
        return f"{variant} trains afresh (its training had finished)"
    return f"{variant} trains afresh (no checkpoint was complete yet)"


def _raw_prompts(catalog: DataCatalog, variant: str) -> tuple[RawPrompts, str]:
    """The variant's raw prompts, and where they come from (the catalog entry's path) for messages."""
    name = f"{variant}.{RAW_PROMPTS}"
    raw = catalog.load(name)
    location = describe_source(catalog.config_resolver.resolve_pattern(name))["location"]
    source = f"{location} ({name})" if location else name
    if isinstance(raw, pd.DataFrame):
        raw.attrs.setdefault(SOURCE_ATTR, source)
    return raw, source


# The lock file's record of what the run holding it could not write to its MLflow run (tracking_store.record_later).
UNRECORDED_END = "unrecorded_mlflow_end"


def _mark_killed(run_id: str, interrupted: RunInterrupted) -> None:
    """End MLflow run ``run_id`` KILLED, tagged with the signal and the training step it reached."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (see the module doc)

    step = {} if interrupted.step is None else {"grpo.interrupted_at_step": str(interrupted.step)}
    _tag(run_id, {"grpo.interrupted_by": interrupted.signal_name, **step})
    if lost_server() is None:
        MlflowClient().set_terminated(run_id, status="KILLED")
    else:
        record_later(run_id, status="KILLED")


def _tag(run_id: str | None, tags: dict[str, str]) -> None:
    """Tag MLflow run ``run_id``; once the tracking server is lost, keep the tags for the next run to write."""
    from grpo_pipeline.training.mlflow_logging import tag_run  # noqa: PLC0415 (imports transformers)

    if lost_server() is None:
        tag_run(run_id, tags)
    else:
        record_later(run_id, tags=tags)


def _close_previous_run(run_id: str, end: dict[str, Any] | None) -> None:
    """Write how the previous run on these outputs ended to its MLflow run, when it is still RUNNING: ``end``, what
    that run could not write itself (its tracking server stopped answering), or else KILLED (its process died)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 (see the module doc)
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (same)

    from grpo_pipeline.training.mlflow_logging import tag_run  # noqa: PLC0415 (imports transformers)

    client = MlflowClient()
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return
        if end:
            tag_run(run_id, end["tags"])
            client.set_terminated(run_id, status=end["status"] or "FAILED")
            logger.info("MLflow run %s: recorded how it ended (%s), which it could not record itself", run_id, end)
        else:
            client.set_terminated(run_id, status="KILLED")
            logger.warning("MLflow run %s was left RUNNING by a process that died; marked KILLED", run_id)
    except MlflowException:
        logger.info("The previous run's MLflow run %s is not in this store", run_id)


class RunRecordHooks:
    """How a run ended, where a person and ``compare_runs`` look: Ctrl-C and SIGTERM become
    :class:`~grpo_pipeline.interruption.RunInterrupted` (so the run is recorded KILLED, see interruption.py), and a
    run that fails or is interrupted before validating replaces each variant's validation report with one that
    says so (which run, which node, why, and whose checkpoint is on disk), also logged to its MLflow run."""

    def __init__(self) -> None:
        self._previous_handlers: dict[int, Any] = {}
        self._failed_node: str | None = None
        self._saved: set[str] = set()

    # trylast: once the checks passed and kedro-mlflow opened its run, so an interruption has a run to record.
    @hook_impl(trylast=True)
    def before_pipeline_run(self, **kwargs: Any) -> None:
        self._failed_node, self._saved = None, set()
        self._previous_handlers = install_stop_signal_handlers()
        for name in KEDRO_FAILURE_LOGGERS:
            logging.getLogger(name).addFilter(_silent_on_interrupt)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, **kwargs: Any) -> None:
        self._saved.add(dataset_name)

    @hook_impl
    def on_node_error(self, node: Any, **kwargs: Any) -> None:
        self._failed_node = node.name

    @hook_impl
    def after_pipeline_run(self, **kwargs: Any) -> None:
        self._restore_signal_handlers()

    # tryfirst: the failure report is logged to the MLflow run before kedro-mlflow ends it.
    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error: Exception, pipeline: Pipeline, catalog: DataCatalog, **kwargs: Any) -> None:
        import mlflow  # noqa: PLC0415 (see the module doc)

        from grpo_pipeline.reporting import failed_run_markdown, failed_run_report  # noqa: PLC0415 (matplotlib)

        self._restore_signal_handlers()
        run = mlflow.active_run()
        status = "KILLED" if interruption_of(error) else "FAILED"
        for variant in _variants(pipeline):
            report_name = f"{variant}.validation_report"
            if report_name not in pipeline.all_outputs() or report_name in self._saved:
                continue  # this run's own report (a failed validation) stands
            report = failed_run_report(
                status,
                run.info.run_id if run else None,
                self._failed_node,
                str(error).strip()[:2000] or type(error).__name__,
                _checkpoint_on_disk(catalog, f"{variant}.checkpoint"),
            )
            try:
                catalog.save(report_name, report)
                catalog.save(f"{variant}.validation_report_md", failed_run_markdown(report))
            except Exception:  # the run's own error is the one to show, not this one's
                # (Its files are written before MLflow is told, which a lost server does not hear.)
                lost = lost_server() is not None
                logger.warning("[%s] could not write the failed run's validation report", variant, exc_info=not lost)
        if run is not None:
            _tag(run.info.run_id, {"grpo.failed_node": str(self._failed_node), "grpo.error": str(error)[:5000]})

    def _restore_signal_handlers(self) -> None:
        restore_signal_handlers(self._previous_handlers)
        self._previous_handlers = {}


class ReadableRunHooks:
    """What a person sees in MLflow's run list: each run named after its pipeline, the part of it run and the
    ``--params`` it was given (``grpo_debug · training.learning_rate=0.003``) and, once it ends, how it ended, put
    before what the list may cut off (``grpo_debug · validation PASSED · training.learning_rate=0.003``, ``grpo_debug ·
    interrupted by SIGINT at training step 25 of 150 · ...``), tagged ``grpo.pipeline`` and ``grpo.outcome``; every
    validation's status (tag ``grpo.validation``) and headline metrics (``validation/...``) on its run, whether or not
    a model is registered; the experiment tagged as model training, not GenAI. A run name set in
    ``conf/<env>/mlflow.yml`` (``tracking.run.name``) is kept."""

    def __init__(self) -> None:
        self._run_id: str | None = None
        # The name this hook gave the run (its pipelines, then what run_details says), None when it kept another.
        self._name: tuple[str, str] | None = None
        self._failed_node: str | None = None
        self._validated = False

    # trylast: once kedro-mlflow opened the run.
    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, **kwargs: Any) -> None:
        import mlflow  # noqa: PLC0415 (see the module doc)

        from grpo_pipeline.training.mlflow_logging import tag_run  # noqa: PLC0415 (imports transformers)

        run = mlflow.active_run()
        self._run_id, self._name, self._failed_node, self._validated = None, None, None, False
        if run is None:
            return
        self._run_id = run.info.run_id
        pipelines = list(run_params.get("pipeline_names") or [pipeline_name(DEFAULT_VARIANT)])
        tags = {PIPELINE_TAG: "+".join(pipelines)}
        if run.info.run_name in (*pipelines, "__default__"):  # kedro-mlflow's default, not a name the user chose
            self._name = ("+".join(pipelines), run_details(_variants(pipeline), run_params))
            tags["mlflow.runName"] = _run_name(*self._name)
        tag_run(run.info.run_id, tags)
        _open_experiment_on_runs(run.info.experiment_id)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, **kwargs: Any) -> None:
        if dataset_name.rpartition(".")[2] != "validation_report" or self._run_id is None:
            return
        import mlflow  # noqa: PLC0415 (see the module doc)

        from grpo_pipeline.training.mlflow_logging import tag_run  # noqa: PLC0415 (imports transformers)
        from grpo_pipeline.validation_report import validation_metrics  # noqa: PLC0415

        self._validated = True
        tag_run(self._run_id, {VALIDATION_TAG: str(data["status"])})
        mlflow.log_metrics(validation_metrics(data), run_id=self._run_id, synchronous=True)

    @hook_impl
    def on_node_error(self, node: Node, **kwargs: Any) -> None:
        self._failed_node = node.name

    # tryfirst: the run summary (RunSummaryHooks) prints the run's final name.
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, pipeline: Pipeline, catalog: DataCatalog, **kwargs: Any) -> None:
        reports = [f"{variant}.validation_report" for variant in _variants(pipeline)]
        statuses = [catalog.load(name)["status"] for name in reports if name in pipeline.all_outputs()]
        self._end(f"validation {'/'.join(statuses)}" if statuses else "finished")

    # tryfirst: before kedro-mlflow ends the run.
    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error: Exception, **kwargs: Any) -> None:
        from grpo_pipeline.validation import ValidationFailedError  # noqa: PLC0415 (imports torch)

        if interruption := interruption_of(error):
            outcome, status = str(interruption), "KILLED"
        elif isinstance(error, ValidationFailedError):
            outcome, status = "validation FAILED", "FAILED"
        else:
            outcome, status = f"failed in {self._failed_node or 'the run'}", "FAILED"
        if self._run_id is not None and not self._validated:  # the report RunRecordHooks writes says so too
            _tag(self._run_id, {VALIDATION_TAG: status})
        self._end(outcome)

    def _end(self, outcome: str) -> None:
        tags = {OUTCOME_TAG: outcome}
        if self._name is not None:  # the outcome before the details, which MLflow's run list may cut off
            pipelines, details = self._name
            tags["mlflow.runName"] = _run_name(pipelines, outcome, details)
        _tag(self._run_id, tags)
        self._run_id = None


# Tags a person can add as columns of MLflow's run list.
OUTCOME_TAG = "grpo.outcome"
VALIDATION_TAG = "grpo.validation"
# MLflow 3 classes an experiment by this tag: model training, not GenAI. (3.17's UI follows its own GenAI / Model
# training switch instead, which the run summary's link sets: `?workflowType=machine_learning`.)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
RUN_NAME_LENGTH = 200
# kedro run's options that run part of the pipelines: Kedro's run_params key, the option.
SLICING_OPTIONS = {
    "tags": "--tags",
    "node_names": "--nodes",
    "from_nodes": "--from-nodes",
    "to_nodes": "--to-nodes",
    "from_inputs": "--from-inputs",
    "to_outputs": "--to-outputs",
    "namespaces": "--namespaces",
}


def run_details(variants: list[str], run_params: dict[str, Any]) -> str:
    """``--to-nodes=debug.train_grpo training.learning_rate=0.003``: the slice of the pipelines run and the
    ``--params`` given, without the variant's prefix (a run of one variant)."""
    prefix = f"{variants[0]}." if len(variants) == 1 else ""
    sliced = [
        f"{option}={','.join(map(str, run_params[key]))}"
        for key, option in SLICING_OPTIONS.items()
        if run_params.get(key)
    ]
    given = [f"{key.removeprefix(prefix)}={value}" for key, value in _flattened(run_params.get("runtime_params") or {})]
    return " ".join([*sliced, *given])


def _run_name(*parts: str) -> str:
    name = " · ".join(part for part in parts if part)
    return name if len(name) <= RUN_NAME_LENGTH else name[: RUN_NAME_LENGTH - 1] + "…"


def _flattened(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    pairs = []
    for key, value in params.items():
        if isinstance(value, dict):
            pairs += _flattened(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _open_experiment_on_runs(experiment_id: str) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 (see the module doc)

    client = MlflowClient()
    key, kind = EXPERIMENT_KIND
    if key not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, key, kind)


def _checkpoint_on_disk(catalog: DataCatalog, name: str) -> dict[str, Any] | None:
    """The checkpoint an earlier run left at ``name``'s path, and the MLflow run that trained it, without loading it."""
    from grpo_pipeline.models.checkpoint import TRAINER_STATE_FILE, is_checkpoint  # noqa: PLC0415

    config = catalog.config_resolver.resolve_pattern(name)
    path = config.get("path") or config.get("filepath")
    if not path or not is_checkpoint(path):
        return None
    state_file = Path(path) / TRAINER_STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    return {"path": str(path), "global_step": state.get("global_step"), "mlflow_run_id": state.get("mlflow_run_id")}


class LineageHooks:
    """Each variant's data source logged to its MLflow run as dataset inputs when the run reads it (lineage.py): the
    catalog entry's type and location, the splits used, their rows and content hash."""

    def __init__(self) -> None:
        self._catalog: DataCatalog | None = None

    @hook_impl
    def before_pipeline_run(self, catalog: DataCatalog, **kwargs: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, **kwargs: Any) -> None:
        variant, _, dataset = dataset_name.rpartition(".")
        if dataset != RAW_PROMPTS or self._catalog is None:
            return
        import mlflow  # noqa: PLC0415 (see the module doc)

        from grpo_pipeline.lineage import log_data_source  # noqa: PLC0415 (same)

        if mlflow.active_run() is None:
            return
        config = resolved_once(self._catalog.load(f"params:{variant}"), variant)
        entry = self._catalog.config_resolver.resolve_pattern(dataset_name)
        for logged in log_data_source(data, config.params.data, dataset_name, entry):
            logger.info("[%s] %s data: %s", variant, logged["context"], logged)


class RunSummaryHooks:
    """Print what a person wants after ``kedro run``: rewards before/after, wall time and where it went (each node's
    seconds, also MLflow metrics ``node_seconds/<node>``), where outputs went."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._node_started: dict[str, float] = {}
        self._node_seconds: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        self._started = time.perf_counter()
        self._node_started, self._node_seconds = {}, {}

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        seconds = time.perf_counter() - self._node_started.pop(node.name, time.perf_counter())
        self._node_seconds[node.name] = seconds
        import mlflow  # noqa: PLC0415 (see the module doc)

        if mlflow.active_run() is not None:
            mlflow.log_metric(f"node_seconds/{node.name}", round(seconds, 3))

    def _phases(self, wall: float) -> str:
        """The nodes that took more than 1 % of the run, slowest first, with their share of its wall time."""
        slowest = sorted(self._node_seconds.items(), key=lambda item: -item[1])
        shares = [f"{name} {seconds:.1f} s ({seconds / wall:.0%})" for name, seconds in slowest if seconds > wall / 100]
        return f"Where the time went: {', '.join(shares)}." if shares else ""

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        import mlflow  # noqa: PLC0415 (see the module doc)

        from grpo_pipeline.reporting import accuracy_lines, plain, signed, status_text  # noqa: PLC0415 (imports matplotlib)

        wall = time.perf_counter() - self._started
        lines = [f"Run finished in {wall:.1f} s.", *filter(None, [self._phases(wall)])]
        for variant in _variants(pipeline):
            report_name = f"{variant}.validation_report"
            if report_name not in pipeline.all_outputs() or not catalog.exists(report_name):
                continue
            report = catalog.load(report_name)
            lines.append(
                f"[{variant}] eval reward base {plain(report['base']['mean_reward'])} -> trained "
                f"{plain(report['trained']['mean_reward'])} ({signed(report['reward_gain'])}) on "
                f"{report['eval_prompts']} held-out prompts; checkpoint: {report['checkpoint']}"
            )
            lines += [f"[{variant}] held-out {line}" for line in accuracy_lines(report)]
            lines.append(f"[{variant}] validation: {status_text(report).replace('**', '')}")
        run = mlflow.active_run() or mlflow.last_active_run()
        if run is not None:
            name = mlflow.tracking.MlflowClient().get_run(run.info.run_id).info.run_name  # as it ended
            lines.append(
                f"MLflow run '{name}' ({run.info.run_id}) in {mlflow.get_tracking_uri()}; browse it with `kedro mlflow "
                f"ui`, at #/experiments/{run.info.experiment_id}?workflowType=machine_learning (its runs, not GenAI)."
            )
        print("\n".join(["", "=" * 30 + " grpo-pipeline summary " + "=" * 30, *lines, "=" * 83]), flush=True)
