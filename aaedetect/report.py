"""``aaedetect report``: one self-contained HTML page about a model and a table it scored.

Three layers:

- collecting (:func:`collect`): one pass over the table in chunks that keeps only what the
  figures need, whatever the table's size: every row's scores (four floats and the label), a
  seeded uniform sample of rows for the scatter plots (:class:`RowSample`) and the rows with the
  highest ``anomaly_score`` (:class:`TopRows`);
- drawing (the ``*_figure`` functions and :func:`render_html`): arrays in, a matplotlib figure or
  HTML out; no files, no model;
- :func:`write_report`, the entry point, which ties them together and writes the page atomically.

The page fetches nothing: figures are PNG data URIs, the stylesheet is inline, there is no
script. matplotlib (the ``report`` extra) is imported by the drawing functions only, and only
through its object API (no pyplot, no global state).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from .config import DEFAULT_CHUNK_ROWS
from .errors import DataError, OptionError
from .manifest import HISTORY_KEYS
from .pipeline import _labels, evaluate  # the label check and metrics of `score --label`
from .preprocess import InputReport
from .tables import AtomicOutput, TableSource

logger = logging.getLogger("aaedetect")

#: The score parts of the output table, in the order the report shows them.
PARTS = ("anomaly_score", "recon_score", "latent_score", "neighbor_score")
#: Most rows (of each label, when labels are given) kept for the latent and parts figures.
PLOT_ROWS = 5000
#: Rows in the top-anomalies table by default.
TOP_ROWS = 20
#: Most of a row's own values the top table shows, and the most characters of each.
SHOWN_VALUES, SHOWN_CHARS = 6, 24
#: Columns that explain each row's score (``score_frame(..., explain=K)``); shown when present.
EXPLAIN_COLUMNS = ("top_columns", "top_shares")
#: How many columns each explanation names. None: not asked for.
#: SWITCH ON once FrameScorer.score_frame takes ``explain=K``: set EXPLAIN = 3.
EXPLAIN: int | None = 3
#: Columns the report adds to the rows it keeps: each row's 0-based position in the file, its
#: label, and the sample's key and group (named so as not to meet a table's own columns).
POSITION, LABEL, KEY, GROUP = "_aaedetect_position", "_aaedetect_label", "_aaedetect_key", "_aaedetect_group"
MISSING_MATPLOTLIB = "aaedetect report needs matplotlib: pip install 'aaedetect[report]'"

NORMAL, ANOMALY, PRIOR, FLAGGED, THRESHOLD = "#3b6fb6", "#d1495b", "#9a9a9a", "#e08a1e", "#222222"
DPI = 100


def require_matplotlib() -> None:
    """Raise :class:`OptionError` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptionError(MISSING_MATPLOTLIB) from None


# ---------------------------------------------------------------------- collecting
class RowSample:
    """A seeded uniform sample of at most ``capacity`` rows per group, kept over chunks.

    Bottom-k sampling: every row gets a key from one seeded stream, in file order, and each group
    (label value, or one group without labels) keeps the rows with the smallest keys; the same
    file and seed give the same sample at any chunk size.
    """

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.kept: pd.DataFrame | None = None

    def add(self, rows: pd.DataFrame, groups: np.ndarray | None = None) -> None:
        keys = self.rng.random(len(rows))
        rows = rows.assign(**{KEY: keys, GROUP: 0 if groups is None else groups})
        pool = rows if self.kept is None else pd.concat([self.kept, rows], ignore_index=True)
        pool = pool.sort_values(KEY, kind="stable").groupby(GROUP, sort=False).head(self.capacity)
        self.kept = pool.reset_index(drop=True)

    def frame(self) -> pd.DataFrame:
        """The sampled rows in file order (by their :data:`POSITION` column)."""
        if self.kept is None:
            return pd.DataFrame()
        return self.kept.sort_values(POSITION).drop(columns=[KEY, GROUP]).reset_index(drop=True)


class TopRows:
    """The ``n`` rows with the highest ``anomaly_score`` seen so far (ties: the earlier row)."""

    def __init__(self, n: int):
        self.n = n
        self.kept: pd.DataFrame | None = None

    def add(self, rows: pd.DataFrame) -> None:
        best = _highest(rows, self.n)
        pool = best if self.kept is None else pd.concat([self.kept, best], ignore_index=True)
        self.kept = _highest(pool, self.n)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame() if self.kept is None else self.kept


def _highest(rows: pd.DataFrame, n: int) -> pd.DataFrame:
    order = np.lexsort((rows[POSITION].to_numpy(), -rows["anomaly_score"].to_numpy(np.float64)))
    return rows.iloc[order[:n]].reset_index(drop=True)


@dataclass
class ReportData:
    """What one pass over a table keeps for the report."""

    source: str
    rows: int = 0
    total_rows: int = 0  # rows in the file (more than ``rows`` with --max-rows)
    lines: bool = True  # whether row positions are CSV lines (else 1-based row numbers)
    label: str | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # PARTS -> (rows,)
    labels: np.ndarray | None = None  # (rows,) 0/1
    sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    top: pd.DataFrame = field(default_factory=pd.DataFrame)
    columns: list[str] = field(default_factory=list)  # the model's input columns

    def location(self, position: int) -> int:
        """The file line (CSV) or the 1-based row number (Parquet) of a 0-based row position."""
        return position + 2 if self.lines else position + 1


def collect(source: TableSource, scorer, *, label: str | None = None, max_rows: int | None = None,
            seed: int = 0, top: int = TOP_ROWS, plot_rows: int = PLOT_ROWS,
            chunk_rows: int = DEFAULT_CHUNK_ROWS,
            progress: Callable[[int], None] | None = None) -> ReportData:
    """Score ``source`` chunk by chunk with ``scorer`` (a :class:`~aaedetect.scoring.FrameScorer`)
    and keep what the report needs. ``max_rows``: a seeded uniform sample of at most that many rows
    (the ``seed``), as ``fit --max-rows`` takes."""
    columns = list(scorer.preprocessor.columns)
    if source.format == "csv" and label is not None and label not in source.header:
        raise DataError(f"{source.name}: no label column {label!r}")
    data = ReportData(source=source.name, lines=source.format == "csv", label=label, columns=columns)
    sample, best = RowSample(plot_rows, seed), TopRows(top)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    labels: list[np.ndarray] = []
    report = InputReport()
    extra = {} if EXPLAIN is None else {"explain": EXPLAIN}
    for chunk, where, first_line, positions in _chunks(source, max_rows, seed, chunk_rows, data):
        if label is not None and label not in chunk.columns:
            raise DataError(f"{source.name}: no label column {label!r}")
        y = None if label is None else _labels(chunk[label], where, label, first_line, data.rows)
        scored = scorer.score_frame(chunk, source=where, first_line=first_line, report=report, **extra)
        for p in PARTS:
            parts[p].append(scored[p].to_numpy(np.float32))
        kept = scored[[*columns, *PARTS, *(c for c in EXPLAIN_COLUMNS if c in scored.columns)]]
        kept = kept.set_axis(pd.RangeIndex(len(kept)), axis=0).assign(**{POSITION: positions})
        if y is not None:
            labels.append(y)
            kept = kept.assign(**{LABEL: y})
        sample.add(kept, y)
        best.add(kept)
        data.rows += len(chunk)
        if progress is not None:
            progress(data.rows)
    report.log(source.name)
    if data.rows == 0:
        raise DataError(f"{source.name}: has a header but no rows; there is nothing to report on")
    data.total_rows = max(data.total_rows, data.rows)
    data.scores = {p: np.concatenate(parts[p]) for p in PARTS}
    data.labels = np.concatenate(labels) if labels else None
    data.sample, data.top = sample.frame(), best.frame()
    return data


def _chunks(source: TableSource, max_rows: int | None, seed: int, chunk_rows: int,
            data: ReportData) -> Iterator[tuple[pd.DataFrame, str, int | None, np.ndarray]]:
    """(chunk, name for messages, file line of its first row or None, 0-based row positions)."""
    if max_rows is None:
        done = 0
        for chunk, first_line in source.chunks(chunk_rows=chunk_rows):
            yield chunk, source.name, first_line, np.arange(done, done + len(chunk))
            done += len(chunk)
        return
    rows, data.total_rows = source.sample(max_rows, seed=seed, chunk_rows=chunk_rows)
    if data.total_rows > len(rows):
        logger.info("%s: reporting on a uniform sample of %s of its %s rows (--max-rows, seed %s)",
                    source.name, f"{len(rows):,}", f"{data.total_rows:,}", seed)
    where = f"{source.name} (sampled rows)"
    for start in range(0, max(len(rows), 1), chunk_rows):
        chunk = rows.iloc[start:start + chunk_rows]
        yield chunk.reset_index(drop=True), where, None, chunk.index.to_numpy()


def latent_codes(detector, rows: pd.DataFrame, prior_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the encoder's mean code of each row (N, L), ``prior_rows`` seeded samples of the prior (P, L)).

    ``detector``: a fitted :class:`aaedetect.AAEDetector`; ``rows`` holds its input columns.
    """
    import torch

    from .detector import _batched

    graph = detector.graph_
    numeric, categorical = detector.preprocessor.transform(rows, source="sampled rows", first_line=None,
                                                           report=InputReport())  # counted already

    def mean_code(num, cat):
        return (graph.aae.encoder.mu(graph.aae.encoder.body(graph.features(num, cat))),)

    (codes,) = _batched(mean_code, numeric, categorical, detector.device_)
    with torch.no_grad():
        prior = graph.aae.prior.sample(prior_rows, generator=torch.Generator().manual_seed(seed))
    return codes, prior.cpu().numpy()


def training_history(history: list[dict[str, Any]]) -> dict[str, np.ndarray] | None:
    """The per-epoch training metrics (``AAEDetector.history_``, checked when the model was
    loaded: :func:`aaedetect.manifest.parse_history`) as arrays, one per key of
    :data:`~aaedetect.manifest.HISTORY_KEYS`, NaN where a value is null; None for models written
    before the history was kept."""
    if not history:
        return None
    return {key: np.array([np.nan if r[key] is None else r[key] for r in history], dtype=np.float64)
            for key in HISTORY_KEYS}


# ---------------------------------------------------------------------- drawing
def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    """A matplotlib Figure (object API, Agg canvas) and its axes, as a flat list."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes.flat)


def png_bytes(fig) -> bytes:
    """The figure as PNG (no timestamp or software tag: the same figure gives the same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def training_figure(history: dict[str, np.ndarray], best_epoch: int):
    """Four panels over epochs: reconstruction and validation loss; the generator's (encoder's)
    adversarial loss; the discriminator's loss; its accuracy. The best epoch is marked."""
    fig, (loss, gen, disc, acc) = _figure(10, 6.4, 2, 2)
    epoch = history["epoch"]
    panels = (
        (loss, "reconstruction", [("recon_loss", "training", NORMAL),
                                  ("validation_loss", "validation", ANOMALY)]),
        (gen, "generator (encoder) adversarial loss", [("generator_loss", None, NORMAL)]),
        (disc, "discriminator loss", [("discriminator_loss", None, NORMAL)]),
        (acc, "discriminator accuracy", [("discriminator_accuracy", None, NORMAL)]),
    )
    for ax, title, lines in panels:
        for key, name, colour in lines:
            ax.plot(epoch, history[key], color=colour, marker="o", markersize=3, linewidth=1.5, label=name)
        ax.axvline(best_epoch, color=THRESHOLD, linestyle="--", linewidth=1,
                   label=f"best epoch ({best_epoch})")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
    acc.axhline(0.5, color=PRIOR, linewidth=1, linestyle=":", label="chance (0.5)")
    acc.set_ylim(-0.02, 1.02)
    for ax in (loss, acc):
        ax.legend(fontsize=8, frameon=False)
    return fig


def score_bins(scores: np.ndarray, bins: int = 80) -> np.ndarray:
    edges = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=bins)
    return edges if edges[-1] > edges[0] else np.array([edges[0] - 0.5, edges[0] + 0.5])


def score_figure(scores: np.ndarray, threshold: float, labels: np.ndarray | None = None):
    """Histogram of ``anomaly_score`` (log counts), overlaid by label when given, with the threshold."""
    fig, (ax,) = _figure(10, 3.8)
    edges = score_bins(np.append(scores, threshold))
    groups = ([("all rows", scores, NORMAL)] if labels is None else
              [(f"normal (label 0, {int((labels == 0).sum()):,})", scores[labels == 0], NORMAL),
               (f"anomaly (label 1, {int((labels == 1).sum()):,})", scores[labels == 1], ANOMALY)])
    for name, values, colour in groups:
        if len(values):
            ax.hist(values, bins=edges, color=colour, alpha=0.35, label=name)
            ax.hist(values, bins=edges, color=colour, histtype="step", linewidth=1.2)
    ax.axvline(threshold, color=THRESHOLD, linestyle="--", linewidth=1.2,
               label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly_score (higher = more anomalous)")
    ax.set_ylabel("rows (log scale)")
    ax.legend(fontsize=9, frameon=False)
    return fig


def project_2d(codes: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(codes, prior samples, how) in two dimensions, both through the same map: the coordinates
    themselves when the code has two (one, with a random second axis), else the first two
    principal axes of the prior samples and the codes pooled in equal numbers (the directions
    where either spreads most)."""
    latent = prior.shape[1]
    if latent == 2:
        return codes, prior, "the latent code's two coordinates"
    if latent == 1:  # spread vertically at random (seeded), so that density shows
        jitter = np.random.default_rng(0)
        spread = lambda a: np.column_stack([a[:, 0], jitter.uniform(-1, 1, len(a))])  # noqa: E731
        return spread(codes), spread(prior), ("the latent code's one coordinate (axis 1; axis 2 is "
                                              "random jitter that shows where points crowd)")
    n = min(len(codes), len(prior)) or len(prior)
    pooled = np.concatenate([prior[:n], codes[:n]]).astype(np.float64)
    center = pooled.mean(axis=0)
    _, _, vt = np.linalg.svd(pooled - center, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2, [0]] + (vt[:2, [0]] == 0))  # a fixed sign: same data, same picture
    share = np.var((pooled - center) @ axes.T, axis=0).sum() / max(np.var(pooled, axis=0).sum(), 1e-12)
    how = (f"the first two principal axes of the prior samples and the codes pooled (they hold "
           f"{share:.0%} of the pooled variance of the {latent}-dimensional code)")
    return (codes - center) @ axes.T, (prior - center) @ axes.T, how


def latent_figure(codes: np.ndarray, prior: np.ndarray, labels: np.ndarray | None = None):
    """Prior samples (grey) beside the data's codes, coloured by label when given, in one
    projection (:func:`project_2d`); returns (figure, how the projection was made)."""
    codes2, prior2, how = project_2d(codes, prior)
    fig, (ax, marg) = _figure(10, 4.8, 1, 2)
    dot = dict(s=5, linewidths=0, rasterized=True)
    ax.scatter(prior2[:, 0], prior2[:, 1], color=PRIOR, alpha=0.35,
               label=f"prior samples ({len(prior2):,})", **dot)
    for name, mask, colour in _groups(labels, len(codes2)):
        ax.scatter(codes2[mask, 0], codes2[mask, 1], color=colour, alpha=0.55,
                   label=f"{name} codes ({int(mask.sum()):,})", **dot)
    ax.set_title("codes beside the prior", fontsize=11)
    ax.set_xlabel("axis 1")
    ax.set_ylabel("axis 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, frameon=False, markerscale=3)
    # The radius (distance from the prior's mean) shows a mismatch that a 2-D view can hide.
    radius_prior = np.linalg.norm(prior - prior.mean(axis=0), axis=1)
    radius = np.linalg.norm(codes - prior.mean(axis=0), axis=1)
    edges = np.histogram_bin_edges(np.concatenate([radius_prior, radius]), bins=60)
    marg.hist(radius_prior, bins=edges, density=True, color=PRIOR, alpha=0.5, label="prior samples")
    for name, mask, colour in _groups(labels, len(codes)):
        if mask.any():
            marg.hist(radius[mask], bins=edges, density=True, histtype="step", linewidth=1.5,
                      color=colour, label=f"{name} codes")
    marg.set_title("distance from the prior's mean (all dimensions)", fontsize=11)
    marg.set_xlabel("distance")
    marg.set_ylabel("density")
    marg.legend(fontsize=8, frameon=False)
    return fig, how


def _groups(labels: np.ndarray | None, n: int) -> list[tuple[str, np.ndarray, str]]:
    if labels is None:
        return [("data", np.ones(n, dtype=bool), NORMAL)]
    return [("normal", labels == 0, NORMAL), ("anomaly", labels == 1, ANOMALY)]


def parts_figure(parts: dict[str, np.ndarray], flagged: np.ndarray, labels: np.ndarray | None = None):
    """recon_score against neighbor_score and against latent_score, one dot per sampled row,
    coloured by label when given (else by whether the row is flagged); flagged rows are ringed."""
    fig, axes = _figure(10, 4.6, 1, 2)
    dot = dict(s=7, linewidths=0, rasterized=True)
    for ax, other in zip(axes, ("neighbor_score", "latent_score")):
        x, y = parts["recon_score"], parts[other]
        if labels is None:
            groups = [("not flagged", ~flagged, NORMAL), ("flagged", flagged, FLAGGED)]
        else:
            groups = _groups(labels, len(x))
        for name, mask, colour in groups:
            ax.scatter(x[mask], y[mask], color=colour, alpha=0.5,
                       label=f"{name} ({int(mask.sum()):,})", **dot)
        if labels is not None and flagged.any():
            ax.scatter(x[flagged], y[flagged], facecolors="none", edgecolors=THRESHOLD, s=22,
                       linewidths=0.6, rasterized=True, label=f"flagged ({int(flagged.sum()):,})")
        _symlog(ax, "x", x)
        _symlog(ax, "y", y)
        ax.set_xlabel("recon_score")
        ax.set_ylabel(other)
        ax.set_title(f"recon_score vs {other}", fontsize=11)
        ax.legend(fontsize=8, frameon=False, markerscale=2)
    return fig


#: Where a score axis turns from linear to logarithmic (scores are z-scores: normal rows lie within it).
LINEAR_UP_TO = 5.0


def _symlog(ax, which: str, values: np.ndarray) -> None:
    """A score axis that is linear within +-LINEAR_UP_TO and logarithmic beyond, with plain ticks."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    getattr(ax, f"set_{which}scale")("symlog", linthresh=LINEAR_UP_TO)
    steps = [0, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e5, 1e6]
    ticks = sorted({sign * t for t in steps for sign in (-1, 1)})
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    shown = [t for t in ticks if low - 1 <= t <= high * 1.5 + 1] or [0]
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(FixedLocator(shown))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}".replace("-", "\u2212")))


def curves_figure(labels: np.ndarray, scores: np.ndarray):
    """ROC and precision-recall curves of ``scores`` against 0/1 ``labels`` (both present),
    AUROC and AUPRC (average precision) in the titles."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    fig, (roc, pr) = _figure(10, 4.4, 1, 2)
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    roc.plot(*_thin(fpr, tpr), color=ANOMALY, linewidth=1.8)
    roc.plot([0, 1], [0, 1], color=PRIOR, linestyle=":", linewidth=1)
    roc.set_title(f"ROC: AUROC {roc_auc_score(labels, scores):.3f}", fontsize=11)
    roc.set_xlabel("false-positive rate")
    roc.set_ylabel("true-positive rate (recall)")
    pr.plot(*_thin(recall, precision), color=ANOMALY, linewidth=1.8, drawstyle="steps-post")
    pr.axhline(labels.mean(), color=PRIOR, linestyle=":", linewidth=1,
               label=f"share of anomalies ({labels.mean():.3f})")
    pr.set_title(f"precision-recall: AUPRC {average_precision_score(labels, scores):.3f}", fontsize=11)
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.legend(fontsize=8, frameon=False)
    for ax in (roc, pr):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
    return fig


def _thin(x: np.ndarray, y: np.ndarray, most: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``most`` points of a curve (evenly spaced, both ends kept): enough to draw it."""
    if len(x) <= most:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, most).round().astype(int))
    return x[keep], y[keep]


# ---------------------------------------------------------------------- HTML
STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fafafa; margin: 0; line-height: 1.5; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #e4e4e4; }
h3 { font-size: 15px; margin: 18px 0 6px; }
nav { font-size: 14px; margin: 8px 0 16px; }
nav a { color: #3b6fb6; margin-right: 14px; text-decoration: none; }
.lead { color: #57606a; margin: 0 0 8px; }
.note { color: #57606a; font-size: 14px; margin: 6px 0 10px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #57606a; font-size: 14px; margin-top: 6px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 6px 0 12px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eaeaea; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.values { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px;
            color: #444; }
.facts { display: flex; gap: 40px; flex-wrap: wrap; }
.facts table th { background: none; font-weight: 500; color: #57606a; white-space: nowrap; }
.anomaly { color: #d1495b; font-weight: 600; }
"""


def figure_html(fig, alt: str, caption: str) -> str:
    """An <img> with the figure as a PNG data URI, and its caption."""
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _facts(title: str, rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<div><h3>{_e(title)}</h3><table>{body}</table></div>"


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit]) + (f", and {len(names) - limit} more" if len(names) > limit else "")
    return _e(shown or "none")


def summary_html(model: dict[str, Any], data: ReportData, flagged: int, metrics: dict[str, float]) -> str:
    """The model's facts (from :func:`model_facts`) beside the scored data's."""
    share = flagged / data.rows if data.rows else 0.0
    rows_text = f"{data.rows:,}"
    if data.total_rows > data.rows:
        rows_text += f" (a uniform sample of the file's {data.total_rows:,})"
    scored = [("file", _e(data.source)), ("rows scored", rows_text),
              ("flagged as anomalies", f'<span class="anomaly">{flagged:,}</span> ({share:.2%})')]
    if data.labels is not None:
        normal = data.labels == 0
        n_flagged_normal = int((data.scores["anomaly_score"][normal] > model["threshold"]).sum())
        scored += [("label column", _e(data.label)),
                   ("labelled anomalies", f"{int(data.labels.sum()):,} ({data.labels.mean():.2%})")]
        if normal.any():
            scored.append(("normal rows flagged", f"{n_flagged_normal / normal.sum():.2%} "
                                                  f"(the model aimed at {model['fpr']:g})"))
        scored += [(name, f"{metrics[key]:.3f}") for key, name in
                   (("auroc", "AUROC"), ("auprc", "AUPRC"), ("precision", "precision of the flags"),
                    ("recall", "recall of the flags")) if key in metrics]
    return ('<div class="facts">' + _facts("Model", model["facts"]) + _facts("Options", model["options"])
            + _facts("Data scored", scored) + "</div>")


def model_facts(detector, manifest: dict[str, Any], model_dir: str) -> dict[str, Any]:
    """The summary's facts about a loaded model: validated values from the detector, and the
    manifest's free text (versions, date, device) escaped."""
    pre, t, o = detector.preprocessor_, detector.training_, detector.options_.to_dict()
    text = lambda v: _e(str(v)[:80])  # noqa: E731 (free text from the manifest)
    training = manifest.get("training", {}) if isinstance(manifest.get("training"), dict) else {}
    numeric, categorical = [c.name for c in pre.numeric], [c.name for c in pre.categorical]
    facts = [
        ("directory", _e(model_dir)),
        ("written by", f"aaedetect {text(manifest.get('package_version', '?'))} on "
                       f"{text(manifest.get('created', '?'))}"),
        (f"numeric columns ({len(numeric)})", _names(numeric)),
        (f"categorical columns ({len(categorical)})", _names(categorical)),
        ("left out", _names([str(d.get("column")) for d in pre.dropped if isinstance(d, dict)]
                            + [f"{c} (--exclude)" for c in o.get("exclude", ())])),
        ("rows trained on", f"{t.rows:,} ({t.validation_rows:,} held out)"),
        ("epochs", f"{t.epochs_run} of at most {t.max_epochs}, best {t.best_epoch}"
                   + (" (stopped early)" if t.stopped_early else "")),
        ("trained in", f"{t.seconds:.1f} s on {text(training.get('device', '?'))}"),
        ("threshold", f"{detector.threshold_:.4f} (held-out false-positive rate {o['fpr']:g})"),
        ("network", f"latent size {detector.net_config_.latent_dim}, hidden "
                    f"{', '.join(map(str, detector.net_config_.hidden))}"),
    ]
    shown = ("prior", "regularizer", "adv_weight", "latent_signal", "latent_weight", "neighbor_weight",
             "scaling", "noise", "lr", "batch_size", "seed")
    options = {**o, "seed": detector.seed_}
    return {"facts": facts, "options": [(k, _e(options[k])) for k in shown if k in options],
            "threshold": detector.threshold_, "fpr": o["fpr"]}


def top_table_html(top: pd.DataFrame, data: ReportData) -> str:
    """The top rows: where, the scores, the label, the explanation columns when the scorer gave
    them, and a few of the row's own values (explained columns first)."""
    explained = [c for c in EXPLAIN_COLUMNS if c in top.columns]
    kinds = ([("line" if data.lines else "row", "num")] + [(p, "num") for p in PARTS]
             + ([(data.label, "num")] if data.label else []) + [(c, "text") for c in explained]
             + [("values", "values")])
    body = []
    for row in top.to_dict("records"):
        cells = [str(data.location(int(row[POSITION])))] + [f"{row[p]:.3f}" for p in PARTS]
        if data.label:
            cells.append('<span class="anomaly">1</span>' if row[LABEL] == 1 else "0")
        cells += [_e(str(row[c]).replace(";", "; ")) for c in explained]
        cells.append(_row_values(row, data.columns, str(row.get("top_columns", ""))))
        body.append("<tr>" + "".join(f'<td class="{kind}">{cell}</td>'
                                     for cell, (_, kind) in zip(cells, kinds)) + "</tr>")
    head = "".join(f'<th class="{kind}">{_e(name)}</th>' for name, kind in kinds)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _row_values(row: dict, columns: list[str], explained: str) -> str:
    """``name=value`` for a few of the model's columns, those named in ``explained`` first."""
    first = [c for c in explained.split(";") if c in columns]
    order = first + [c for c in columns if c not in first]
    shown = []
    for name in order[:SHOWN_VALUES]:
        value = row.get(name)
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        if len(text) > SHOWN_CHARS:
            text = text[:SHOWN_CHARS - 1] + "…"
        shown.append(f"{_e(name)}={_e(text)}")
    more = f" (+{len(order) - SHOWN_VALUES} more)" if len(order) > SHOWN_VALUES else ""
    return " · ".join(shown) + _e(more)


@dataclass
class Section:
    id: str
    title: str
    body: str


def render_html(title: str, lead: str, sections: list[Section]) -> str:
    """The whole page: inline stylesheet, a table of contents, the sections; nothing fetched."""
    nav = "".join(f'<a href="#{s.id}">{_e(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{_e(s.title)}</h2>{s.body}</section>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
            f'<body><main><h1>{_e(title)}</h1><p class="lead">{lead}</p><nav>{nav}</nav>{body}'
            f"</main></body></html>\n")


def build_sections(data: ReportData, model: dict[str, Any], history: dict[str, np.ndarray] | None,
                   best_epoch: int, codes: np.ndarray, prior: np.ndarray,
                   metrics: dict[str, float]) -> list[Section]:
    """Every section of the report from the collected data (no files, no model); ``metrics``:
    :func:`aaedetect.pipeline.evaluate`'s, with labels."""
    threshold = model["threshold"]
    anomaly = data.scores["anomaly_score"]
    flagged = anomaly > threshold
    sample = data.sample
    sample_labels = sample[LABEL].to_numpy() if data.labels is not None else None
    sections = [Section("summary", "Summary", summary_html(model, data, int(flagged.sum()), metrics))]

    if history is None:
        body = ('<p class="note">This model has no per-epoch training history: it was written by a '
                "version of aaedetect that did not keep one. Fit it again to see training curves.</p>")
    else:
        body = figure_html(training_figure(history, best_epoch), "training curves", (
            "Per epoch. Top left: reconstruction loss on training batches and on the held-out rows "
            "(the validation loss that picks the best epoch, dashed line; the model keeps that "
            "epoch's weights). Top right and bottom left: the adversarial game, the encoder trying "
            "to pass its codes off as prior samples and the discriminator telling them apart. "
            "Bottom right: the discriminator's accuracy; near 0.5 means the codes look like the "
            "prior to it, near 1 that it tells them apart easily."))
    sections.append(Section("training", "Training", body))

    share = f"{flagged.mean():.2%}"
    caption = ("How the rows' anomaly scores are spread (counts on a log scale). The dashed line is "
               f"the model's threshold: rows to its right are flagged ({share} of these rows). ")
    caption += ("Normal rows should sit left of the line and anomalies right of it; the overlap is "
                "where the model errs." if data.labels is not None else
                "Pass --label with a column of true 0/1 labels to split the histogram by label.")
    sections.append(Section("scores", "Anomaly scores", figure_html(
        score_figure(anomaly, threshold, data.labels), "histogram of anomaly scores", _e(caption))))

    fig, how = latent_figure(codes, prior, sample_labels)
    sampled = _sampled_text(data, len(sample))
    sections.append(Section("latent", "Latent space", figure_html(fig, "latent codes and prior samples", _e(
        f"Left: the encoder's code (its mean) of {sampled}, beside as many samples of the model's "
        f"prior, both shown on {how}. An autoencoder that matched its prior puts the normal rows' "
        "codes where the prior's samples are; codes far out or in empty regions are unusual "
        "rows (or a prior the model did not match). Right: each code's distance from the prior's "
        "mean, in all dimensions, against the prior samples' distances."))))

    parts = {p: sample[p].to_numpy(np.float64) for p in PARTS}
    sections.append(Section("parts", "Score parts", figure_html(
        parts_figure(parts, parts["anomaly_score"] > threshold, sample_labels), "score parts", _e(
            f"The parts of the score for {sampled}: reconstruction against the neighbour part "
            "(distance to the nearest training rows) and against the latent part (how unlikely the "
            "code is). Each part is a robust z-score, about 0 on normal rows; the axes are linear "
            f"up to {LINEAR_UP_TO:g} and logarithmic beyond. anomaly_score is recon_score plus "
            "weighted latent and neighbour parts; "
            + ("ringed dots are" if sample_labels is not None else "orange dots are rows")
            + " above the threshold. Rows far out on one axis only are caught by that part alone."))))

    if data.labels is not None:
        if 0 < data.labels.sum() < len(data.labels):
            body = figure_html(curves_figure(data.labels, anomaly), "ROC and precision-recall curves", _e(
                "How well anomaly_score ranks the labelled anomalies above the normal rows, at "
                "every threshold. ROC: the share of anomalies caught against the share of normal "
                "rows flagged; the dotted diagonal is chance. Precision-recall: of the rows "
                "flagged, the share that are anomalies, against the share of anomalies caught; "
                "the dotted line is the precision of flagging rows at random."))
        else:
            body = (f'<p class="note">Column {_e(data.label)} holds only '
                    f'{"anomalies (1)" if data.labels.all() else "normal rows (0)"}: ROC and '
                    "precision-recall curves need both.</p>")
        sections.append(Section("curves", "ROC and precision-recall", body))

    explained = all(c in data.top.columns for c in EXPLAIN_COLUMNS)
    note = (f"The {len(data.top)} rows with the highest anomaly_score, highest first. "
            + ("top_columns names the columns with the largest shares of each row's score (from "
               "their reconstruction errors and their differences to the nearest normal rows, each "
               "above what is typical for the column; as aaedetect score --explain) and "
               "top_shares those shares; " if explained else "")
            + f"values shows {'those and other' if explained else 'some'} of the row's own values "
            f"as read, for the columns the model uses. The {'line' if data.lines else 'row'} "
            "column says where each row is in the file.")
    sections.append(Section("top", "Top anomalies", f'<p class="note">{_e(note)}</p>'
                            + top_table_html(data.top, data)))
    return sections


def _sampled_text(data: ReportData, n: int) -> str:
    if n >= data.rows:
        return f"all {data.rows:,} rows"
    per = " per label" if data.labels is not None else ""
    return f"a seeded uniform sample of {n:,} of the {data.rows:,} rows (at most {PLOT_ROWS:,}{per})"


@dataclass
class ReportSummary:
    rows: int
    flagged: int
    output: str
    metrics: dict[str, float] = field(default_factory=dict)


def write_report(data: str | os.PathLike, model_dir: str | os.PathLike, output: str | os.PathLike, *,
                 label: str | None = None, sep: str = ",", max_rows: int | None = None,
                 seed: int = 0, top: int = TOP_ROWS, device: str = "auto",
                 chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: Callable[[int], None] | None = None) -> ReportSummary:
    """Score the table at ``data`` with the model in ``model_dir`` and write the HTML report to
    ``output`` (atomically: nothing appears there unless the whole report was made)."""
    require_matplotlib()
    from .artifacts import ModelDir
    from .engine import load_scorer

    if top < 1:
        raise OptionError(f"--top {top}: must be at least 1")
    with TableSource(data, sep=sep) as source, AtomicOutput(output) as out:
        detector = load_scorer(model_dir, engine="torch", device=device)  # torch: for the codes
        found = ModelDir(model_dir)
        history = training_history(detector.history_)
        collected = collect(source, detector, label=label, max_rows=max_rows, seed=seed, top=top,
                            chunk_rows=chunk_rows, progress=progress)
        anomaly = collected.scores["anomaly_score"]
        flagged = anomaly > detector.threshold_
        metrics = evaluate(collected.labels, anomaly, flagged) if collected.labels is not None else {}
        codes, prior = latent_codes(detector, collected.sample[collected.columns], PLOT_ROWS, seed)
        model = model_facts(detector, found.manifest, str(model_dir))
        sections = build_sections(collected, model, history, detector.training_.best_epoch, codes,
                                  prior, metrics)
        title = f"aaedetect report: {os.path.basename(collected.source) or collected.source}"
        lead = (f"Model {_e(model_dir)} on {_e(collected.source)}: {collected.rows:,} rows scored. "
                "Every figure is embedded; this file needs nothing else to be read.")
        out.write_bytes(render_html(title, lead, sections).encode("utf-8"))
    return ReportSummary(collected.rows, int(flagged.sum()), out.name, metrics)

