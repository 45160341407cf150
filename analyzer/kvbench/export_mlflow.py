"""`kvbench export mlflow`: log run directories to an MLflow tracking server, idempotently.

Layout: one parent run per sweep (named by the run id) and one nested run per point (named by the point id,
`mlflow.parentRunId` set), all in one experiment. Runs are found again by their tags `kvbench.run_id`,
`kvbench.kind` and `kvbench.point_id`, so exporting the same run again updates the runs it made: params
and metric values already logged are not logged twice (MLflow keeps every metric value ever logged, so a
history can only grow by what is missing), artifacts are overwritten at the same paths, and a run whose
content digest (tag `kvbench.export_sha256`) has not changed is left alone.

MLflow is an optional dependency (`pip install 'kvbench[mlflow]'`); only MlflowClient's public API is used.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvbench.mlflow_content import POINT, SWEEP, TAG_KIND, TAG_POINT, TAG_RUN, RunExport, SweepExport

DIGEST_TAG = "kvbench.export_sha256"
PARENT_TAG = "mlflow.parentRunId"
DEFAULT_EXPERIMENT = "kvbench"
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TAG_LENGTH = 5000  # what every MLflow release accepts
_DEFAULT_PARAM_LENGTH = 500  # MLflow releases before 2.x took 500 characters; newer ones say how many


class MlflowMissing(Exception):
    """MLflow is not installed."""


class ExportError(Exception):
    """The tracking server refused or could not be reached; the message says which and why."""


@dataclass
class RunOutcome:
    name: str
    mlflow_run_id: str
    created: bool
    unchanged: bool
    params_logged: int
    metrics_logged: int
    artifacts_logged: int


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MlflowMissing(
            "MLflow is not installed: install the optional extra with `pip install 'kvbench[mlflow]'`"
        ) from None
    return MlflowClient


def _param_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        return int(MAX_PARAM_VAL_LENGTH)
    except (ImportError, AttributeError):
        return _DEFAULT_PARAM_LENGTH


def _batches(params: list[Any], tags: list[Any], metrics: list[Any]) -> Iterator[tuple[list, list, list]]:
    """log_batch calls within MLflow's limits: 100 params and tags, 1000 metrics, 1000 entities in all."""
    params, tags, metrics = list(params), list(tags), list(metrics)
    while params or tags or metrics:
        batch_params, params = params[:_PARAMS_PER_BATCH], params[_PARAMS_PER_BATCH:]
        room = _PARAMS_PER_BATCH - len(batch_params)
        batch_tags, tags = tags[:room], tags[room:]
        room = _METRICS_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_params, batch_tags, batch_metrics


class Exporter:
    """Logs SweepExports into one experiment of one tracking server."""

    def __init__(self, tracking_uri: str, experiment: str, note: Callable[[str], None]) -> None:
        client_class = _mlflow()
        # MlflowClient prints each run's URL to stdout when it ends a run; this command reports by itself.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # MLflow retries a refused request for minutes (made for rate-limiting hosted servers); a server that
        # is not there should fail in seconds. Both stay the user's to set.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        self.client = client_class(tracking_uri=tracking_uri)
        self.note = note
        self.param_limit = _param_limit()
        found = self.client.get_experiment_by_name(experiment)
        if found is not None and found.lifecycle_stage != "active":
            raise ExportError(
                f"experiment {experiment!r} is deleted on {tracking_uri}; restore it or pick another"
            )
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    def _existing(self, run_id: str) -> dict[tuple[str, str], Any]:
        """The active runs this sweep already has: (kind, point id or "") -> run."""
        found: dict[tuple[str, str], Any] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{TAG_RUN}` = '{run_id}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                tags = run.data.tags
                found.setdefault((tags.get(TAG_KIND, ""), tags.get(TAG_POINT, "")), run)
            token = page.token
            if not token:
                return found

    def export(self, sweep: SweepExport) -> list[RunOutcome]:
        existing = self._existing(sweep.run_id)
        outcomes = [self._sync(sweep.parent, existing.get((SWEEP, "")), None)]
        parent_id = outcomes[0].mlflow_run_id
        for point in sweep.points:
            outcomes.append(self._sync(point, existing.get((POINT, point.tags[TAG_POINT])), parent_id))
        return outcomes

    def _sync(self, export: RunExport, run: Any, parent_id: str | None) -> RunOutcome:
        digest = export.digest()
        if run is not None and run.data.tags.get(DIGEST_TAG) == digest:
            return RunOutcome(export.name, run.info.run_id, False, True, 0, 0, 0)
        from mlflow.entities import Metric, Param, RunTag

        created = run is None
        tags = {key: value[:_TAG_LENGTH] for key, value in export.tags.items()}
        if parent_id is not None:
            tags[PARENT_TAG] = parent_id
        if run is None:
            run = self.client.create_run(
                self.experiment_id, start_time=export.start_ms, tags=tags, run_name=export.name
            )
        run_id = run.info.run_id
        params = [Param(key, value) for key, value in self._missing_params(export, run.data.params).items()]
        new_tags = [] if created else [RunTag(key, value) for key, value in tags.items()]
        metrics = [
            Metric(m.key, m.value, m.timestamp_ms, m.step)
            for m in self._missing_metrics(run_id, export, set(run.data.metrics))
        ]
        for batch_params, batch_tags, batch_metrics in _batches(params, new_tags, metrics):
            self.client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
        for path, folder in export.artifacts:
            self.client.log_artifact(run_id, str(path), folder)
        self.client.set_terminated(run_id, export.status, end_time=export.end_ms)
        # Last: a run interrupted before this point is brought up to date by the next export.
        self.client.set_tag(run_id, DIGEST_TAG, digest)
        return RunOutcome(
            export.name, run_id, created, False, len(params), len(metrics), len(export.artifacts)
        )

    def _missing_params(self, export: RunExport, logged: dict[str, str]) -> dict[str, str]:
        """Params not logged yet (cut to MLflow's length limit); a changed one is noted, never relogged."""
        missing = {}
        for key, value in export.params.items():
            if len(value) > self.param_limit:
                value = value[: self.param_limit - 1] + "…"
            if key not in logged:
                missing[key] = value
            elif logged[key] != value:
                self.note(
                    f"{export.name}: param {key} changed, but MLflow params cannot change: kept the old value"
                )
        return missing

    def _missing_metrics(self, run_id: str, export: RunExport, logged_keys: set[str]) -> list[Any]:
        """What the run lacks: every value of a new key, the missing (time, step, value)s of a known one."""
        by_key: dict[str, list[Any]] = defaultdict(list)
        for metric in export.metrics:
            by_key[metric.key].append(metric)
        missing = []
        for key, values in by_key.items():
            if key in logged_keys:
                have = {(m.timestamp, m.step, m.value) for m in self.client.get_metric_history(run_id, key)}
                values = [v for v in values if (v.timestamp_ms, v.step, v.value) not in have]
            missing += values
        return missing


def export_runs(
    run_dirs: list[Path],
    tracking_uri: str,
    experiment: str,
    analysis: Path | None,
    note: Callable[[str], None],
) -> list[tuple[str, list[RunOutcome]]]:
    """Export each run directory; its analysis is `analysis`, else `<run>/analysis`, else computed here."""
    from kvbench.mlflow_content import analysis_of, sweep_export
    from kvbench.outputs import REPORT

    try:
        exporter = Exporter(tracking_uri, experiment, note)
    except (MlflowMissing, ExportError):
        raise
    except Exception as exc:  # MlflowException and the HTTP client's errors alike
        raise ExportError(f"{tracking_uri}: cannot use the tracking server: {exc}") from None
    done = []
    for run_dir in run_dirs:
        with tempfile.TemporaryDirectory(prefix="kvbench-mlflow-") as tmp:
            staging = Path(tmp)
            result = analysis_of(run_dir)
            folder = analysis or run_dir / "analysis"
            if not (folder / REPORT).is_file():
                folder = _analyse_into(run_dir, staging / "analysis", note)
            sweep = sweep_export(run_dir, staging / "records", folder, result)
            for line in sweep.notes:
                note(f"{run_dir}: {line}")
            try:
                done.append((sweep.run_id, exporter.export(sweep)))
            except Exception as exc:  # MlflowException and the HTTP client's errors alike
                raise ExportError(f"{tracking_uri}: export of {run_dir} failed: {exc}") from None
    return done


def _analyse_into(run_dir: Path, out: Path, note: Callable[[str], None]) -> Path:
    """Run `kvbench analyze RUN --out OUT` (with figures) for a run that has no analysis yet."""
    from kvbench.ingest import ingest
    from kvbench.outputs import write_outputs

    write_outputs(ingest([run_dir]), out, "no-offload", True, note)
    return out
