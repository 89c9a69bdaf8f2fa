"""Pictures from training runs: metric curves from a CSVLogger ``metrics.csv`` (``fulgor plot LOGDIR``) and a grid
of original vs reconstructed 8x8 digits for the demo. matplotlib (Agg backend) is imported only when drawing."""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["find_metrics_csv", "metric_groups", "plot_group", "plot_metrics", "reconstruction_grid"]

Series = tuple[list[int], list[float]]
_NOT_PLOTTED = {"step", "epoch"}
# "train_loss_epoch", "val/loss", "test-acc" -> "loss", "loss", "acc": one picture per quantity.
_STAGE = re.compile(r"^(train|training|val|valid|validation|test|predict)[_/-]")
_REDUCTION = re.compile(r"[_/-](step|epoch)$")
_FIGSIZE = (6.4, 4.8)
_DPI = 100


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("Plotting needs matplotlib. Install it with `pip install matplotlib`.") from err
    matplotlib.use("Agg")  # files only: no display needed (servers, CI)
    import matplotlib.pyplot as plt

    return plt


def find_metrics_csv(path: str | os.PathLike[str]) -> str:
    """``path`` itself if it is a file, else the newest ``metrics.csv`` under the directory ``path``.

    Raises:
        FileNotFoundError: nothing to plot there.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"`path` {path!r} is neither a metrics.csv file nor a log directory.")
    found = [os.path.join(root, "metrics.csv") for root, _, files in os.walk(path) if "metrics.csv" in files]
    if not found:
        raise FileNotFoundError(
            f"No metrics.csv under {path!r}. Pass a CSVLogger directory (e.g. lightning_logs/version_0) or the file."
        )
    return max(found, key=os.path.getmtime)


def _group_of(name: str) -> str:
    return _REDUCTION.sub("", _STAGE.sub("", name)) or name


def metric_groups(csv_path: str | os.PathLike[str]) -> dict[str, dict[str, Series]]:
    """Read a ``metrics.csv``: group -> metric name -> (steps, values), skipping empty cells.

    Metrics that differ only by stage prefix (``train_``, ``val_``, ``test_``...) or ``_step``/``_epoch`` suffix share
    a group, so ``train_loss`` and ``val_loss`` land on one axis.
    """
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = [c for c in (rows[0].keys() if rows else []) if c not in _NOT_PLOTTED]
    groups: dict[str, dict[str, Series]] = {}
    for name in columns:
        steps, values = [], []
        for row in rows:
            cell = row.get(name) or ""
            if cell == "" or not row.get("step"):
                continue
            try:
                value = float(cell)
            except ValueError:
                continue
            steps.append(int(float(row["step"])))
            values.append(value)
        if steps:
            groups.setdefault(_group_of(name), {})[name] = (steps, values)
    return groups


def plot_group(title: str, series: dict[str, Series], run_name: str | None = None) -> Figure:
    """One figure: each metric of ``series`` as a line (markers when it has few points) against the step.

    A metric with a single point (e.g. ``test_loss``) is drawn last, as a large distinct marker, so the line of
    another metric ending at the same step does not hide it. The y axis is labelled with ``title`` (the quantity)
    and the title names ``run_name`` when given.
    """
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=_FIGSIZE, dpi=_DPI)
    # Lines first, single points after them (higher zorder): a lone test point stays visible on top.
    ordered = sorted(series.items(), key=lambda item: (len(item[1][0]) == 1, item[0]))
    for name, (steps, values) in ordered:
        if len(steps) == 1:
            ax.plot(steps, values, label=name, linestyle="none", marker="*", markersize=12, zorder=5)
        else:
            ax.plot(steps, values, label=name, marker="o" if len(steps) <= 20 else None, markersize=3)
    ax.set_title(f"{title} ({run_name})" if run_name else title)
    ax.set_xlabel("step")
    ax.set_ylabel(title)
    ax.grid(alpha=0.3)
    ax.legend()
    values = [v for _, vs in series.values() for v in vs]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")  # losses spanning decades read better on a log axis
    fig.tight_layout()
    figure: Figure = fig
    return figure


def plot_metrics(path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Write one PNG (640x480) per metric group of a CSVLogger run.

    Args:
        path: a ``metrics.csv`` or a directory containing one (the newest one found is used).
        out_dir: where to write the PNGs; defaults to the folder of the CSV.

    Returns:
        The PNG paths, sorted.

    Example::

        plot_metrics("lightning_logs/version_0")  # -> [".../loss.png", ".../acc.png"]
    """
    plt = _matplotlib()
    csv_path = find_metrics_csv(path)
    target = os.fspath(out_dir) if out_dir is not None else os.path.dirname(os.path.abspath(csv_path))
    os.makedirs(target, exist_ok=True)
    written = []
    run_name = _run_name(csv_path)
    for group, series in metric_groups(csv_path).items():
        fig = plot_group(group, series, run_name)
        file = os.path.join(target, re.sub(r"[^\w.-]+", "_", group) + ".png")
        fig.savefig(file, dpi=_DPI)
        plt.close(fig)
        written.append(file)
    return sorted(written)


def _run_name(csv_path: str) -> str:
    """``.../lightning_logs/version_3/metrics.csv`` -> ``lightning_logs/version_3``: the logger's name and version."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    return os.path.join(os.path.basename(os.path.dirname(folder)), os.path.basename(folder))


def reconstruction_grid(originals: Any, reconstructions: Any, path: str | os.PathLike[str]) -> str:
    """Save a 2-row grid: original 8x8 digits on top, their reconstructions below (100 px per digit, 220 px high).

    Args:
        originals: ``n`` images as a tensor or array of shape ``(n, 64)`` or ``(n, 8, 8)``.
        reconstructions: the same shape as ``originals``.
        path: the PNG to write.

    Returns:
        ``path`` as a string.
    """
    plt = _matplotlib()
    top, bottom = _as_images(originals), _as_images(reconstructions)
    if len(top) != len(bottom):
        raise ValueError(f"Got {len(top)} originals but {len(bottom)} reconstructions; pass one of each per digit.")
    n = len(top)
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2), dpi=_DPI, squeeze=False)
    for col in range(n):
        for row, images in enumerate((top, bottom)):
            ax = axes[row][col]
            ax.imshow(images[col].numpy(), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("original", fontsize=7)
    axes[1][0].set_ylabel("reconstructed", fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.97, bottom=0.03, wspace=0.05, hspace=0.05)
    fig.savefig(os.fspath(path), dpi=_DPI)
    plt.close(fig)
    return os.fspath(path)


def _as_images(batch: Any) -> Any:
    """Tensors/arrays/lists of flat 64-vectors or 8x8 images -> a float tensor of shape (n, 8, 8)."""
    images = torch.as_tensor(batch).detach().to("cpu", torch.float32)
    n = images.shape[0]
    side = math.isqrt(images[0].numel())
    if side * side != images[0].numel():
        raise ValueError(f"Each image needs a square number of pixels (64 for 8x8 digits), got {images[0].numel()}.")
    return images.reshape(n, side, side)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``plot`` sub-command to the CLI's sub-parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "plot",
        help="write PNG curves of the metrics in a CSVLogger metrics.csv",
        description="Write one PNG (640x480) per metric group (train_loss and val_loss share loss.png) of a"
        " CSVLogger run, next to its metrics.csv unless --out-dir is given, and print each path.",
    )
    parser.add_argument("path", help="a metrics.csv, or a log directory containing one")
    parser.add_argument("--out-dir", default=None, help="where to write the PNGs (default: next to the CSV)")
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run ``fulgor plot``: print each PNG written; exit status 1 when there is nothing to plot."""
    try:
        paths = plot_metrics(args.path, args.out_dir)
    except FileNotFoundError as err:
        print(f"fulgor plot: {err}")  # noqa: T201
        return 1
    for path in paths:
        print(path)  # noqa: T201
    return 0 if paths else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fulgor.plot PATH [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="fulgor")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(["plot", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    raise SystemExit(main())
