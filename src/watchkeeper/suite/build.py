"""``init()``: a calibrated suite from reference data, in memory or streamed from files
(the schema and task inferred, the label, loss, joint and security models fitted, the
monitors generated and calibrated on the reference)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from watchkeeper.baseline.binning import DEFAULT_BINS
from watchkeeper.baseline.embedding import plan_embeddings
from watchkeeper.baseline.estimators import LabelModel, LossModel
from watchkeeper.baseline.expressions import parse_rules
from watchkeeper.baseline.importance import importance
from watchkeeper.baseline.multiclass import fit_class_calibration, multiclass_left_out
from watchkeeper.baseline.multivariate import fit as fit_joint
from watchkeeper.baseline.ood import fit as fit_security
from watchkeeper.baseline.schema import Kind, Role, infer_schema
from watchkeeper.baseline.segments import fit_segments, segment_names
from watchkeeper.baseline.task import TaskType, infer_task
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.delimited import CsvLayout
from watchkeeper.io.display import progress_bar
from watchkeeper.io.tables import to_table
from watchkeeper.monitors import (
    Monitor,
    ReferenceData,
)
from watchkeeper.profiles.core import profile
from watchkeeper.profiles.embedding import cross_fit
from watchkeeper.profiles.task import row_codes
from watchkeeper.suite.core import Suite, cores
from watchkeeper.suite.generate import (
    DEFAULT_BUDGET,
    check_rules,
    extra_monitors,
    family_weights,
    fit_groups,
    generate_monitors,
    split_budget,
)
from watchkeeper.suite.segments import Segments
from watchkeeper.wire import CLIENT


def init(
    reference: Any,
    *,
    target: str | None = None,
    prediction: str | Iterable[str] | None = None,
    proba: str | Iterable[str] | None = None,
    id: str | None = None,
    timestamp: str | None = None,
    client: str | None = None,
    sensitive: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    pii: str | Iterable[str] | None = None,
    not_pii: str | Iterable[str] | None = None,
    positive_class: str | None = None,
    allow_inverted_score: bool = False,
    budget: float = DEFAULT_BUDGET,
    budget_weights: dict[str, float] | None = None,
    serving: bool = False,
    rules: Any = None,
    monitors: Iterable[Monitor | str] | None = None,
    segments: str | Iterable[str | Iterable[str]] | None = None,
    bins: int = DEFAULT_BINS,
    name: str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    positive: str | None = None,
    memory: int | str | None = None,
    stream: bool | None = None,
    jobs: int | None = None,
    layout: CsvLayout | None = None,
    notes: Callable[[Path, str], None] | None = None,
    embeddings: Mapping[str, str | Iterable[str]] | None = None,
    embed_text: str | Iterable[str] | None = None,
    text_model: str | None = None,
    multivariate: bool = False,
    multivariate_groups: Mapping[str, str | Iterable[str]] | None = None,
) -> Suite:
    """Infer the schema of reference data, generate every monitor that applies, and
    calibrate each threshold so the whole suite stays within ``budget`` false alerts per
    window. Roles can be named explicitly; the rest are inferred from names and data.

    ``positive_class`` overrides the positive class of a binary classifier (by default
    the one its score ranks highest); one the score ranks lowest is an error unless
    ``allow_inverted_score``. ``budget_weights`` overrides the share of the budget per
    monitor family (:data:`DEFAULT_WEIGHTS`); ``serving=True`` gives a share to the
    monitors of serving inputs (``_error``, clients, time) the reference lacks (see
    :func:`idle_reason`). ``positive`` is the former name of ``positive_class``.

    ``rules`` are declarative rules every row should meet, as a mapping of name to
    expression (``{"amount_within_limit": "amount <= limit"}``) or the suite file's list of
    ``{"name", "expr"}`` (see :mod:`watchkeeper.baseline.expressions`); their violation
    rate is calibrated against the reference's own. ``monitors`` adds monitors of your own
    (instances, or registered type names such as ``"too_many_zeros:amount"``): they are
    calibrated and share the alert budget like the generated ones. ``segments`` names
    columns, or pairs ``"region,plan"``, whose values are monitored as slices of their own
    (drift, quality and performance per segment; see :mod:`watchkeeper.suite.segments`).

    A big Parquet or CSV reference (a file, directory or glob of more than
    :data:`~watchkeeper.suite.streamed.STREAM_ROWS` rows, or one an in-memory init would
    not fit in ``memory``, e.g. ``"2GB"``) is read batch by batch and never whole: bins
    from a quantile sketch, exact categories and reference profile, models and calibration
    on a seeded sample (see :mod:`watchkeeper.suite.streamed`). ``stream=True`` or
    ``False`` forces the choice; ``jobs`` reads its batches on that many cores (default
    all); ``layout`` says how to read CSV files and ``notes`` hears what was guessed. A
    :class:`~watchkeeper.suite.streamed.TwoPass` reference (a Spark DataFrame from
    :func:`watchkeeper.spark.init`) is read the same way, by its own passes.

    ``embeddings`` declares groups of numeric columns that are one vector each (name →
    columns, "c1,c2,…" or a prefix such as "emb_"); list columns of numbers are vectors
    by themselves. ``embed_text`` names the text columns to embed (none by default: other
    text columns are monitored through their descriptors); ``text_model="minilm"`` embeds
    them with a pretrained sentence model (the ``text-model`` extra) instead of a
    projection fitted on the reference. See :mod:`watchkeeper.baseline.embedding`.

    ``multivariate=True`` adds ``multivariate_drift`` (a reference-fitted PCA of the
    features, see :mod:`watchkeeper.baseline.multivariate`): it sees a broken correlation
    no single column shows, at the price of profiling several times slower (each row is
    scored), so it is not added by default. ``multivariate_groups`` declares column groups
    (name → columns, a list or "c1,c2,…"), each with a model and a ``multivariate_drift``
    monitor of its own (its findings name the group), sharing the drift family's budget.
    """
    if not 0.0 < budget < 1.0:
        raise SuiteError("budget", f"must be in (0, 1), got {budget!r}")
    weights = family_weights(budget_weights)
    source = str(reference) if isinstance(reference, (str, os.PathLike)) else None
    from watchkeeper.run.stream import inputs as stream_inputs
    from watchkeeper.run.stream import parse_memory
    from watchkeeper.suite import streamed

    limit = parse_memory(memory)
    if stream is None and not isinstance(reference, streamed.TwoPass):
        stream = streamed.should_stream(reference, limit)
    found: streamed.Scan | None = None
    two_pass: streamed.TwoPass | None = None
    if isinstance(reference, streamed.TwoPass):  # read in two passes elsewhere (Spark)
        two_pass, source = reference, reference.source
    elif stream:
        if source is None:
            raise DataError("stream: only a Parquet or CSV file, directory or glob streams")
        two_pass = streamed.Files(stream_inputs(source), source, layout, limit,
                                  jobs or cores(), notes)
    if two_pass is not None:
        with progress_bar(desc="reading reference", unit="B", unit_scale=True,
                          progress=progress, leave=False) as bar:
            found = two_pass.scan(seed=seed,
                                  progress=lambda done: bar.update(max(done - bar.n, 0)))
        assert found.sample is not None
        table: pa.Table = found.sample
    else:
        table = to_table(reference, "reference")
    schema = infer_schema(table, target=target, prediction=prediction, proba=proba, id=id,
                          timestamp=timestamp, client=client, sensitive=sensitive,
                          ignore=ignore, pii=pii, not_pii=not_pii, bins=bins)
    if found is not None:
        found.replan(schema, bins)
    plan_embeddings(schema, table, seed=seed, embeddings=embeddings, text=embed_text,
                    id_column=next((c.name for c in schema.by_role(Role.ID)), None),
                    text_model=text_model)
    first = {r: next((c.name for c in schema.by_role(r)), None)
             for r in (Role.TARGET, Role.PREDICTION, Role.PROBA, Role.ID)}
    schema.task = infer_task(
        table, target=first[Role.TARGET], prediction=first[Role.PREDICTION],
        proba=first[Role.PROBA], id=first[Role.ID], positive=positive_class or positive,
        allow_inverted_score=allow_inverted_score,
        sensitive=[c.name for c in schema if c.sensitive and c.role == Role.FEATURE],
        probas=[c.name for c in schema.by_role(Role.PROBA)],
    )
    schema.rules = parse_rules(rules if rules is not None else [])
    check_rules(schema.rules, schema)
    schema.segments = fit_segments(table, segment_names(segments))
    added = extra_monitors(monitors)
    task = schema.task
    inputs = {c.name: (c.edges if c.edges else tuple(c.categories or ()))
              for c in schema if c.role == Role.FEATURE and c.n_bins}
    if task is not None and task.type == TaskType.REGRESSION and task.target and task.prediction:
        task.loss_model = LossModel.fit(table, task, inputs)
    if task is not None and task.type == TaskType.BINARY and task.target and task.score_edges:
        task.label_model = LabelModel.fit(table, row_codes(table, task), task, inputs,
                                          progress=progress)
    if task is not None and task.type == TaskType.MULTICLASS and task.target and \
            task.class_probas:
        task.class_calibration = fit_class_calibration(table, task.target, task.classes,
                                                       task.class_probas)
    if task is not None and task.type == TaskType.MULTICLASS:
        if task.class_probas and task.proba in schema.columns and \
                schema.columns[task.proba].role != Role.PROBA:  # inferred: a list column
            schema.columns[task.proba].role = Role.PROBA
            schema.columns[task.proba].note = "class scores (inferred)"
        if task.class_calibration is None:
            task.estimation_skipped = multiclass_left_out(task)
    clients = schema.by_role(Role.CLIENT)
    features = [c for c in schema if c.role == Role.FEATURE and c.n_bins]
    schema.security = fit_security(
        table, [c.name for c in features if c.kind == Kind.NUMERIC],
        [(c.name, c.categories or []) for c in features
         if c.categories is not None and not c.truncated],
        client=clients[0].name if clients else CLIENT,
        proba=task.proba if task is not None and task.type == TaskType.BINARY else None,
        prediction=task.prediction if task is not None else None)
    if multivariate:
        schema.multivariate = fit_joint(
            table, [c.name for c in features if c.kind == Kind.NUMERIC and c.edges],
            [(c.name, c.categories or []) for c in features
             if c.categories is not None and not c.truncated], seed=seed)
    schema.multivariate_groups = fit_groups(table, schema, multivariate_groups, seed=seed)
    ref_profile = cross_fit(profile(table, schema), table, schema)
    context = ReferenceData(table, schema, ref_profile, seed)
    if two_pass is not None:  # exact, from every row; calibration keeps the sample's
        ref_profile = two_pass.profile(schema)
    generated = generate_monitors(schema) + added
    for m in generated:
        m.bind(schema)
    for m in progress_bar(generated, desc="calibrating", unit="monitor",
                          progress=progress, leave=False):
        m.calibrate(context)
    label = name or (Path(source).stem if source else "watchkeeper")

    suite = Suite(schema, generated, ref_profile, budget, label, source=source, seed=seed,
                  importance=importance(table, schema), weights=weights, serving=serving,
                  segments=Segments(schema.segments) if schema.segments else None)
    split_budget(generated, budget, weights, suite.idle())
    if suite.segments is not None:
        suite.segments.split(generated)
        suite.segments.fit_nulls(generated, schema, ref_profile)
    return suite
