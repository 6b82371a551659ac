"""The ``aaedetect`` command: parse options, call the library, print. Nothing else lives here.

Errors: the library raises ``AAEDetectError`` subclasses; each command (through :func:`common`)
turns them into one ``error: ...`` line on stderr and the exit code of their class (README, "Exit
codes"); :class:`Group` does the same for usage errors, interrupts and signals.
torch is imported only by commands that train, so ``aaedetect score`` starts fast.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import traceback

import click

from aaedetect._version import __version__
from aaedetect.config import (DEFAULT_CHUNK_ROWS, DEFAULT_OPSET, DEVICES, ENGINES, LATENT_SIGNALS,
                              PART_CAP, REGULARIZERS, SCALINGS, SCORE_BATCH_ROWS, defaults)
from aaedetect.errors import (EXIT_CODES, AAEDetectError, ModelFormatError, Terminated, check_not_stopped,
                              request_stop)

D = defaults()
logger = logging.getLogger("aaedetect")


class Group(click.Group):
    """A click group whose errors are one ``error:`` line (library errors: see :func:`common`)."""

    def main(self, args=None, **kwargs):
        kwargs["standalone_mode"] = False
        previous = _on_sigterm()
        try:
            rv = super().main(args, **kwargs)
            check_not_stopped()  # a SIGTERM whose exception was lost still ends as one
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Terminated:
            click.echo("error: terminated (SIGTERM); nothing was written", err=True)
            sys.exit(143)
        except BrokenPipeError:
            # The reader of our stdout went away (e.g. `| head`): not an error of ours.
            sys.stderr.close()
            sys.exit(1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(rv or 0)


def run() -> None:
    """The ``aaedetect`` program: :data:`main`, then a quick exit.

    Once a command is done (its output committed, every ``atexit`` handler run, stdout and stderr
    flushed), the process ends without tearing the interpreter down module by module: freeing
    onnxruntime, pyarrow and numpy took about 0.1 s, a fifth of a small ``aaedetect score``.
    ``main`` itself exits as usual, for callers in Python (tests, ``CliRunner``).
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    atexit._run_exitfuncs()  # logging.shutdown, weakref finalizers, and the like
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, or stderr closed after one
            pass
    os._exit(code)


def _on_sigterm():
    """Turn SIGTERM into :class:`~aaedetect.errors.Terminated` (and a stop that no result follows,
    even where that exception is lost: see :func:`aaedetect.errors.request_stop`); returns the
    previous handler (None off the main thread)."""
    def handler(signum, frame):
        request_stop()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


class _Formatter(logging.Formatter):
    def format(self, record):
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


def common(func):
    """Options every command takes, and its error handling: a library error (or a bug) becomes
    one ``error:`` line and the exit code of its class; ``--debug`` adds the traceback."""
    @functools.wraps(func)
    def command(*args, debug: bool, **kwargs):
        try:
            return func(*args, **kwargs)
        except AAEDetectError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {_one_line(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except (click.ClickException, click.Abort, BrokenPipeError):
            raise  # Group.main's
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if debug:
                traceback.print_exc()
            click.echo(f"error: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                       f"(run again with --debug for the traceback, and please report it)", err=True)
            sys.exit(1)

    command = click.option("--debug", is_flag=True, help="Show a traceback when something fails.")(command)
    command = click.option("-q", "--quiet", is_flag=True,
                           help="No progress and no summary; warnings and errors only.")(command)
    return command


def _exit_code_help() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


@click.group(cls=Group, epilog=_exit_code_help(),
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="aaedetect")
def main():
    """Find anomalies in tables with an Adversarial Autoencoder.

    Train on normal rows with 'fit', then flag unusual rows with 'score'. Tables are CSV (also
    gzipped, or '-' for stdin) or Parquet.
    """


def _default(name: str) -> str:
    value = D[name]
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@main.command(epilog="Example: aaedetect fit datasets/demo/telemetry_train.csv -o demo-model")
@click.argument("data", metavar="DATA")
@click.option("-o", "--output", "model_dir", required=True, metavar="MODEL_DIR",
              help="Model directory to write (created atomically).")
@click.option("--force", is_flag=True, help="Replace a model already at MODEL_DIR.")
@click.option("--exclude", multiple=True, metavar="COL",
              help="Leave column COL out (ids, labels, timestamps). Repeatable.")
@click.option("--categorical", multiple=True, metavar="COL",
              help="Treat column COL as categories even if it holds numbers. Repeatable.")
@click.option("--scaling", type=click.Choice(SCALINGS), default=None,
              help="Numeric scaling: 'standard' (mean, standard deviation) or 'robust' (median, "
                   f"IQR).  [default: {_default('scaling')}]")
@click.option("--noise", type=float, default=None,
              help="Standard deviation of the noise added to the encoder's input in training "
                   f"(denoising); 0 turns it off.  [default: {_default('noise')}]")
@click.option("--prior", default=None, metavar="NAME",
              help=f"Latent prior: gaussian, uniform or mixture:K.  [default: {_default('prior')}]")
@click.option("--regularizer", type=click.Choice(REGULARIZERS), default=None,
              help="How codes are pulled towards the prior: 'adversarial' (the AAE's discriminator) "
                   f"or 'mmd' (WAE-MMD).  [default: {_default('regularizer')}]")
@click.option("--epochs", "max_epochs", default=None, metavar="N|auto",
              help="Most training epochs (early stopping may end sooner); 'auto' is 100, fewer "
                   f"on tables over 25,000 rows (at least 10).  [default: {_default('max_epochs')}]")
@click.option("--patience", type=int, default=None,
              help=f"Stop after this many epochs without validation improvement.  [default: {_default('patience')}]")
@click.option("--batch-size", type=int, default=None, help=f"Rows per step.  [default: {_default('batch_size')}]")
@click.option("--lr", type=float, default=None,
              help=f"Learning rate of encoder and decoder.  [default: {_default('lr')}]")
@click.option("--disc-lr", type=float, default=None,
              help=f"Learning rate of the discriminator.  [default: {_default('disc_lr')}]")
@click.option("--adv-weight", type=float, default=None,
              help=f"Weight of the regularizer (adversarial or MMD) against reconstruction, in [0, 1).  [default: {_default('adv_weight')}]")
@click.option("--latent-dim", default=None, metavar="N|auto",
              help=f"Size of the latent code.  [default: {_default('latent_dim')}]")
@click.option("--hidden-dims", default=None, metavar="H1,H2|auto",
              help=f"Widths of the two hidden layers.  [default: {_default('hidden_dims')}]")
@click.option("--dropout", type=float, default=None, help=f"Dropout rate.  [default: {_default('dropout')}]")
@click.option("--validation-fraction", type=float, default=None,
              help=f"Share of rows held out for early stopping and calibration.  [default: {_default('validation_fraction')}]")
@click.option("--fpr", type=float, default=None,
              help=f"Target false-positive rate on held-out normal rows; sets the threshold.  [default: {_default('fpr')}]")
@click.option("--latent-signal", type=click.Choice(LATENT_SIGNALS), default=None,
              help="Latent part of the score: 'density' is -log q(z), the code's density under the "
                   "encoded data (prior density corrected by the discriminator); 'discriminator' "
                   f"is -log D(z).  [default: {_default('latent_signal')}]")
@click.option("--latent-weight", type=float, default=None,
              help="Weight of the latent part: anomaly_score = recon_score + WEIGHT * "
                   f"clip(latent_score, 0, {PART_CAP:g}) + NEIGHBOR_WEIGHT * min(neighbor_score, "
                   f"{PART_CAP:g}); 0 leaves it out.  "
                   f"[default: {_default('latent_weight')}]")
@click.option("--neighbor-weight", type=float, default=None,
              help="Weight of the neighbour part (distance to the nearest training rows); 0 leaves "
                   "it out, and the model keeps no training rows.  "
                   f"[default: {_default('neighbor_weight')}]")
@click.option("--neighbor-rows", type=int, default=None,
              help="Most training rows kept for the neighbour part (a seeded sample of more); "
                   "scoring time grows with it.  "
                   f"[default: {_default('neighbor_rows')}]")
@click.option("--recon-trim", type=float, default=None, metavar="SHARE",
              help="For training rows that may hold anomalies: after a few epochs, leave this "
                   "share of each batch's worst-reconstructed rows out of the loss, in [0, 0.5).  "
                   f"[default: {_default('recon_trim')}]")
@click.option("--reference-trim", type=float, default=None, metavar="SHARE",
              help="For training rows that may hold anomalies: leave this share of the rows that "
                   "the networks score highest out of the neighbour part's reference rows and of "
                   f"calibration, in [0, 0.5).  [default: {_default('reference_trim')}]")
@click.option("--reference-cluster", type=float, default=None, metavar="SHARE",
              help="For training rows that may hold anomalies (used when --reference-trim is 0): "
                   "of this share of the rows that the networks score highest, leave out of the "
                   "neighbour part's reference rows those that form a cluster apart from the other "
                   "rows (in clean rows, few or none).  0 turns it off, in [0, 0.5).  "
                   f"[default: {_default('reference_cluster')}]")
@click.option("--max-categories", type=int, default=None,
              help=f"Most categories kept per column; rarer ones share one slot.  [default: {_default('max_categories')}]")
@click.option("--seed", "random_state", type=int, default=0, show_default=True,
              help="Random seed: the same data, options and seed give the same model on CPU.")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help=f"Where to train.  [default: {_default('device')}: CUDA when available]")
@click.option("--max-rows", type=click.IntRange(min=2), default=None, metavar="N",
              help="Train on a seeded uniform sample of at most N rows (the --seed), read in chunks: "
                   "for files larger than memory.  [default: every row]")
@click.option("--sep", default=",", show_default=True, help="CSV field separator.")
@common
def fit(data, model_dir, force, sep, max_rows, quiet, **options):
    """Train a model on the normal rows in DATA and write it to MODEL_DIR.

    String columns become categories; constant and identifier-like columns are left out with a
    warning; missing values are allowed. A random slice of rows (see --validation-fraction) is held
    out to stop training and to calibrate the scores.
    """
    from aaedetect.pipeline import fit_file

    _setup_logging(quiet)
    options = {k: v for k, v in options.items() if v not in (None, ())}
    for name, flag in (("latent_dim", "--latent-dim"), ("max_epochs", "--epochs")):
        if name in options and options[name] != "auto":
            options[name] = _parse_int(options[name], flag)
    if "hidden_dims" in options and options["hidden_dims"] != "auto":
        options["hidden_dims"] = tuple(_parse_int(h, "--hidden-dims") for h in options["hidden_dims"].split(","))
    show = not quiet and sys.stderr.isatty()
    with _EpochBar(show) as bar:
        summary = fit_file(data, model_dir, options, force=force, sep=sep, max_rows=max_rows,
                           progress=bar.update)
    if not quiet:
        m = summary.manifest
        t = m["training"]
        pre = m["preprocessing"]
        click.echo(
            f"trained on {t['rows']:,} rows ({t['validation_rows']:,} held out), "
            f"{len(pre['numeric'])} numeric and {len(pre['categorical'])} categorical columns, "
            f"{t['epochs_run']} epochs (best {t['best_epoch']}) in {summary.seconds:.1f}s on {t['device']}; "
            f"threshold {m['threshold']:.3f} at fpr {m['options']['fpr']}; model in {summary.model_dir}",
            err=True)


def _parse_int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer", param_hint=option) from None


class _EpochBar:
    """Epoch progress on stderr, only when stderr is a terminal."""

    def __init__(self, show: bool):
        self.show = show
        self._bar = None

    def __enter__(self):
        return self

    def update(self, epoch: int, max_epochs: int, record: dict) -> None:
        if not self.show:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=max_epochs, label="training", file=sys.stderr,
                                          show_pos=True, item_show_func=lambda r: r)
            self._bar.__enter__()
        val = record["validation_loss"]
        self._bar.update(1, "val loss n/a" if val is None else f"val loss {val:.4f}")

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def scoring_options(func):
    """The options of the commands that score a file (score, evaluate): engine, device, chunk and
    batch sizes, CSV separator."""
    for option in reversed((
        click.option("--engine", type=click.Choice(ENGINES), default=ENGINES[0], show_default=True,
                     help="onnx: score model.onnx with onnxruntime (fast start, no torch); torch: the "
                          "PyTorch model."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto: an NVIDIA GPU when a working one is found, else CPU."),
        click.option("--chunk-rows", type=click.IntRange(min=1), default=DEFAULT_CHUNK_ROWS, show_default=True,
                     help="Rows read and scored at a time (bounds memory)."),
        click.option("--batch-rows", type=click.IntRange(min=1), default=None,
                     help="Rows per onnxruntime call within a chunk.  [default: "
                          f"{SCORE_BATCH_ROWS['cpu']} on CPU, {SCORE_BATCH_ROWS['cuda']} on CUDA]"),
        click.option("--sep", default=",", show_default=True, help="CSV field separator of DATA."),
    )):
        func = option(func)
    return func


class _RowCounter:
    """'scored N rows' on stderr while a file is scored, only when stderr is a terminal."""

    def __init__(self, show: bool):
        self.show = show

    def __call__(self, rows: int) -> None:
        if self.show:
            click.echo(f"\rscored {rows:,} rows", err=True, nl=False)

    def done(self) -> None:
        if self.show:
            click.echo("", err=True)


@main.command(epilog="Example: aaedetect score datasets/demo/telemetry_test.csv -m demo-model -o scored.csv")
@click.argument("data", metavar="DATA")
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL_DIR", help="Model directory from 'fit'.")
@click.option("-o", "--output", default="-", show_default=True, metavar="OUT",
              help="Where to write: a .csv, .csv.gz or .parquet file, or '-' for CSV on stdout.")
@click.option("--label", default=None, metavar="COL",
              help="Column of true 0/1 labels: also report AUROC, AUPRC, precision, recall and F1 "
                   "(more with 'aaedetect evaluate').")
@click.option("--explain", type=click.IntRange(min=0), default=0, metavar="K",
              help="Also name each row's K columns that contribute most to its anomaly_score: "
                   "top_columns (\"pressure_bar;site\") and top_shares (\"0.71;0.18\").")
@scoring_options
@common
def score(data, model_dir, output, label, engine, device, chunk_rows, batch_rows, explain, sep, quiet):
    """Score every row of DATA with the model in MODEL_DIR.

    The output holds every input column, in order and untouched, plus anomaly_score (higher = more
    anomalous), recon_score, latent_score, neighbor_score and is_anomaly (1 when anomaly_score is
    above the model's threshold). Columns the model does not know pass through. With --explain K,
    top_columns and top_shares follow: the K model columns with the largest shares of the row's
    score (from the reconstruction errors and the differences to the nearest normal rows, each
    column counted above what is typical for it), largest first.
    """
    from aaedetect.engine import load_scorer
    from aaedetect.pipeline import score_file

    _setup_logging(quiet)
    progress = _RowCounter(not quiet and sys.stderr.isatty())

    def scorer():
        return load_scorer(model_dir, engine=engine, device=device, batch_rows=batch_rows)

    summary = score_file(data, scorer, output, sep=sep, chunk_rows=chunk_rows, label=label, progress=progress,
                         explain=explain)
    progress.done()
    if not quiet:
        share = summary.flagged / summary.rows if summary.rows else 0.0
        click.echo(f"scored {summary.rows:,} rows in {summary.seconds:.2f}s: {summary.flagged:,} flagged "
                   f"as anomalies ({share:.1%}); output: {summary.output}", err=True)
        if summary.metrics:
            parts = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.metrics.items()]
            click.echo(f"against column {label!r}: " + ", ".join(parts), err=True)


@main.command(epilog="Example: aaedetect evaluate datasets/demo/telemetry_test.csv -m demo-model --label label")
@click.argument("data", metavar="DATA")
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL_DIR", help="Model directory from 'fit'.")
@click.option("--label", required=True, metavar="COL",
              help="Column of true labels: 1 for an anomaly, 0 for a normal row.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys above) instead of the text report.")
@scoring_options
@common
def evaluate(data, model_dir, label, as_json, engine, device, chunk_rows, batch_rows, sep, quiet):
    """Measure how well the model in MODEL_DIR finds the anomalies labelled in DATA.

    DATA is scored as by 'aaedetect score' (chunk by chunk; nothing is written), and the scores
    are compared with the 0/1 column --label: AUROC and AUPRC of anomaly_score; at the model's
    threshold, precision, recall, F1, the confusion matrix and the false-positive rate on the rows
    labelled normal (beside the rate the threshold was fitted for); the same at the threshold that
    maximises F1. Labels of one class only leave AUROC, AUPRC and the best threshold undefined
    (null, with a warning).

    \b
    --json prints one object with these keys:
      data, model, label            what was evaluated
      rows, anomalies, normal       row counts (anomalies: label 1)
      auroc, auprc                  of anomaly_score; null with one class only
      model_threshold               the model's flags (anomaly_score > threshold):
        threshold, target_fpr         the threshold and the fpr it was fitted for
        flagged, precision, recall, f1, fpr, tn, fp, fn, tp
                                      fpr: flagged share of the normal rows
      best_threshold                the threshold maximising F1 (anomaly_score >= threshold
                                    flagged), with the same keys but target_fpr; null with one
                                    class only
    A rate whose denominator is 0 is null.
    """
    import json

    from aaedetect.engine import load_scorer
    from aaedetect.pipeline import evaluate_file

    _setup_logging(quiet)
    progress = _RowCounter(not quiet and sys.stderr.isatty())

    def scorer():
        return load_scorer(model_dir, engine=engine, device=device, batch_rows=batch_rows)

    summary = evaluate_file(data, scorer, label, sep=sep, chunk_rows=chunk_rows, progress=progress)
    progress.done()
    report = {"data": str(data), "model": str(model_dir), "label": label, **summary.metrics}
    if as_json:
        click.echo(json.dumps(report, indent=2, allow_nan=False))
    else:
        click.echo(evaluation_text(report))


def evaluation_text(r: dict) -> str:
    """``aaedetect evaluate``'s report for people: one aligned block."""
    def number(value, form=".4f"):
        return "n/a" if value is None else format(value, form)

    one_class = r["auroc"] is None
    why = f"n/a (column {r['label']!r} holds one class only)"
    lines = [
        f"evaluated {r['rows']:,} rows of {r['data']} against column {r['label']!r}: "
        f"{r['anomalies']:,} anomalies ({r['anomalies'] / r['rows']:.1%}), {r['normal']:,} normal",
        f"AUROC  {why if one_class else number(r['auroc'])}",
        f"AUPRC  {why if one_class else number(r['auprc'])}",
    ]
    table = [["", "threshold", "precision", "recall", "F1", "FPR", "TN", "FP", "FN", "TP"]]
    for name, key in (("model threshold", "model_threshold"), ("best F1", "best_threshold")):
        at = r[key]
        if at is None:
            table.append([name, "n/a (needs both classes)"])
            continue
        table.append([name, number(at["threshold"]), *(number(at[k], ".3f") for k in ("precision", "recall", "f1")),
                      number(at["fpr"]), *(f"{at[k]:,}" for k in ("tn", "fp", "fn", "tp"))])
    full = [row for row in table if len(row) == len(table[0])]
    widths = [max(len(row[i]) for row in full) for i in range(len(table[0]))]
    for row in table:  # the first column left-aligned, numbers right-aligned
        cells = [row[0].ljust(widths[0])] + ([c.rjust(w) for c, w in zip(row[1:], widths[1:])]
                                             if len(row) == len(table[0]) else row[1:])
        lines.append("  ".join(cells).rstrip())
    at = r["model_threshold"]
    target = "" if at["target_fpr"] is None else f" (the threshold was fitted for {at['target_fpr']:g} on held-out rows)"
    lines.append(f"false-positive rate on the rows labelled normal at the model's threshold: "
                 f"{number(at['fpr'])}{target}")
    return "\n".join(lines)


@main.command(epilog="Example: aaedetect report datasets/demo/telemetry_test.csv -m demo-model "
                    "-o report.html --label label")
@click.argument("data", metavar="DATA")
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL_DIR", help="Model directory from 'fit'.")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="HTML file to write (atomically; '-' for stdout).")
@click.option("--label", default=None, metavar="COL",
              help="Column of true 0/1 labels: split the figures by label and add ROC and "
                   "precision-recall curves.")
@click.option("--max-rows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Report on a seeded uniform sample of at most N rows (the --seed), read in "
                   "chunks.  [default: every row]")
@click.option("--top", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Rows in the table of the highest scores.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the row samples drawn (the figures' rows, --max-rows) and of the "
                   "prior's samples.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where to run the model (torch): auto is an NVIDIA GPU when a working one is "
                   "found, else CPU.")
@click.option("--sep", default=",", show_default=True, help="CSV field separator of DATA.")
@common
def report(data, model_dir, output, label, max_rows, top, seed, device, sep, quiet):
    """Write an HTML report on the model in MODEL_DIR and the rows of DATA it scores.

    One self-contained file (figures embedded, nothing fetched): the model and the data, the
    training curves, the scores' histogram, the latent codes beside the prior, the score parts,
    ROC and precision-recall curves (with --label), and the rows with the highest scores.
    Needs matplotlib: pip install 'aaedetect[report]'.
    """
    from aaedetect.report import write_report

    _setup_logging(quiet)
    progress = _RowCounter(not quiet and sys.stderr.isatty())
    summary = write_report(data, model_dir, output, label=label, sep=sep, max_rows=max_rows,
                           seed=seed, top=top, device=device, progress=progress)
    progress.done()
    if not quiet:
        share = summary.flagged / summary.rows if summary.rows else 0.0
        click.echo(f"scored {summary.rows:,} rows: {summary.flagged:,} flagged as anomalies "
                   f"({share:.1%}); report: {summary.output}", err=True)


@main.command()
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL_DIR", help="Model directory.")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write the ONNX graph to FILE instead of replacing MODEL_DIR/model.onnx.")
@click.option("--opset", type=click.IntRange(min=17), default=None,
              help=f"ONNX opset version.  [default: {DEFAULT_OPSET}]")
@common
def export(model_dir, output, opset, quiet):
    """Export the scoring graph of MODEL_DIR to ONNX again, from its saved weights.

    The graph is built from the weights with onnx (no torch needed), checked with onnx.checker
    and, where torch is installed, against the torch model before it is written.
    """
    from aaedetect.pipeline import export_file

    _setup_logging(quiet)
    written, entry = export_file(model_dir, output, opset=opset)
    if not quiet:
        parity = ("not compared with torch" if entry["parity_error"] is None
                  else f"largest difference from torch {entry['parity_error']:.1e}")
        click.echo(f"wrote {written} (opset {entry['opset']}, inputs {', '.join(entry['inputs'])}; "
                   f"{parity})", err=True)


@main.command()
@click.option("-m", "--model", "model_dir", required=True, metavar="MODEL_DIR", help="Model directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@common
def info(model_dir, as_json, quiet):
    """Show what a model expects and how it was trained."""
    import json

    from aaedetect.artifacts import ModelDir
    from aaedetect.manifest import manifest_problems

    _setup_logging(quiet)
    # A damaged model is described as far as it can be, followed by everything wrong with it.
    found = ModelDir(model_dir, verify_all=False)
    problems = found.problems() + manifest_problems(found.manifest)
    if as_json:
        click.echo(json.dumps(found.manifest, indent=2))
    else:
        try:
            click.echo(describe(found.manifest))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            pass  # manifest_problems already says what is malformed
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s) above)" if len(problems) > 1 else ""
        raise ModelFormatError(f"{found.path}: damaged model: {problems[0]}{more}")


def describe(m: dict) -> str:
    """A human summary of a manifest."""
    pre, t, o = m["preprocessing"], m["training"], m["options"]
    lines = [
        f"aaedetect model (format {m['format_version']}, written by aaedetect {m['package_version']} "
        f"on {m.get('created', '?')})",
        f"input columns the model uses ({len(pre['numeric']) + len(pre['categorical'])}):",
    ]
    center = "median" if m["options"].get("scaling") == "robust" else "mean"
    for c in pre["numeric"]:
        extra = ", may be missing" if c["indicator"] else ""
        lines.append(f"  {c['name']:<24} numeric ({center} {c['center']:.4g}, scale {c['scale']:.4g}{extra})")
    for c in pre["categorical"]:
        shown = ", ".join(c["categories"][:5]) + (", ..." if len(c["categories"]) > 5 else "")
        lines.append(f"  {c['name']:<24} categorical, {len(c['categories'])} categories ({shown})")
    for d in pre["dropped"]:
        lines.append(f"  {d['column']:<24} left out: {d['reason']}")
    if o["exclude"]:
        lines.append(f"  excluded by option: {', '.join(o['exclude'])}")
    nb = m.get("neighbors") if isinstance(m.get("neighbors"), dict) else None
    lines += [
        f"network: {m['network']}",
        "neighbour part: " + (f"{nb.get('rows')} training rows kept in the model (encoded), "
                              f"{nb.get('k')} nearest averaged"
                              + (f"; hidden layer searched in its {nb['hidden_axes']} principal axes"
                                 if nb.get("hidden_axes") else "")
                              if nb else "off, no training rows kept"),
        f"training: {t['rows']:,} rows, {t['validation_rows']:,} held out; {t['epochs_run']} epochs, "
        f"best {t['best_epoch']} (val loss {t['best_val_loss']:.4g}); {t['seconds']}s on {t['device']}; "
        f"seed {m['seed']}",
        *_history_lines(t, o),
        f"options: prior {o['prior']}, adv weight {o['adv_weight']}, latent weight {o['latent_weight']}, neighbor weight {o.get('neighbor_weight', 0)}, "
        f"lr {o['lr']}, batch {o['batch_size']}",
        f"threshold: {m['threshold']:.4f} (anomaly_score above it is flagged; fpr {o['fpr']} on held-out rows)",
        f"files: {', '.join(m['files'])}",
    ]
    return "\n".join(lines)


#: ``aaedetect info`` shows at most this many epochs of the history (always the first, the best
#: and the last).
HISTORY_LINES = 6


def _history_lines(t: dict, o: dict) -> list[str]:
    """A few epochs of the training history: the first, best and last, and some in between."""
    if t.get("history", []) == []:  # absent, or empty when such a model was loaded and saved again
        return ["history: no per-epoch history (written by an older aaedetect)"]
    try:
        history = t["history"]
        epochs = [r["epoch"] for r in history]
        rolled_back = (f"; {_count(t['recoveries'], 'epoch')} rolled back after diverging, not recorded"
                       if t.get("recoveries") else "")
        # evenly spaced records from the first to the last, and the best one
        last, spaced = len(history) - 1, HISTORY_LINES - 1
        best = next((i for i, e in enumerate(epochs) if e == t.get("best_epoch")), None)
        shown = sorted({round(k * last / (spaced - 1)) for k in range(spaced)} | ({best} - {None}))
        generator = "mmd" if o.get("regularizer") == "mmd" else "generator"

        def cell(value, form=".4g"):
            return "n/a" if value is None else format(value, form)

        lines = [f"history: {_count(len(history), 'epoch')} recorded ({len(shown)} shown; losses are "
                 f"means over the epoch){rolled_back}",
                 f"  {'epoch':>5}  {'recon':>9}  {generator:>9}  {'discrim.':>9}  {'disc acc':>8}  "
                 f"{'val loss':>9}"]
        for i in shown:
            r = history[i]
            lines.append(f"  {r['epoch']:>5}  {cell(r['recon_loss']):>9}  {cell(r['generator_loss']):>9}  "
                         f"{cell(r['discriminator_loss']):>9}  {cell(r['discriminator_accuracy'], '.3f'):>8}  "
                         f"{cell(r['validation_loss']):>9}" + ("  best" if i == best else ""))
        return lines
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return ["history: malformed (see the problem below)"]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


if __name__ == "__main__":  # pragma: no cover
    main()
