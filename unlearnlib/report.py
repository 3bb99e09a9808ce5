"""Tables and figures, built only from stored results and saved reproducibly.

Figures are written as PNG and PDF with fixed metadata (no dates), atomically, so the same
results give byte-identical files. Tables are written as Markdown and CSV.
"""
from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import numpy as np

from .io import atomic_write_bytes
from .results import summarize, to_csv, to_markdown

__all__ = ["save_figure", "save_table", "method_table", "plot_loss_curves", "plot_distillation_types",
           "plot_loss_distributions", "plot_training_history", "plot_sensitivity", "plot_beta", "plot_saliency_grid", "plot_accuracy_bars", "plot_forget_vs_test", "mark_best",
           "method_order", "label", "describe_tuning", "scenario_report", "cost_footnote", "SCENARIO_REPORTS", "HEADERS", "PAPER_TABLE1", "PAPER_TABLE2"]

def method_order() -> list[str]:
    """Table order: the original model, then every registered method in its registry order."""
    from .methods import method_names
    return ["original"] + method_names()


def label(method: str) -> str:
    """The display name of ``method`` (its registry label; "Original" for the original model)."""
    from .methods import METHODS
    return "Original" if method == "original" else (METHODS[method].label if method in METHODS else method)


def describe_tuning(picked: dict) -> str:
    """One line per method of :func:`unlearnlib.study.tune`'s result: the settings picked, their
    validation Avg. Gap, and every grid point's (a fallback to the official settings is named)."""
    lines = []
    for m, c in picked.items():
        grid = ", ".join(f"{p} {100 * g:.2f}%" for p, g in c["grid"])
        note = " [no point qualified: official settings kept]" if c.get("fallback") else ""
        lines.append(f"{label(m):18s} picked {c['overrides']}  (validation Avg. Gap {100 * c['avg_gap_val']:.2f}%)"
                     f"{note}; grid: {grid}")
    return "\n".join(lines)


# The paper's own numbers (retain / forget / test accuracy, %), for side-by-side tables.
PAPER_TABLE1 = {"retrain": (97.01, 65.20, 67.8), "finetune": (96.82, 93.0, 64.3),
                "neggrad_plus": (96.83, 83.6, 65.2), "scrub": (99.75, 80.12, 65.0),
                "scrub_attention": (99.81, 77.20, 66.0)}
PAPER_TABLE2 = {"original": (91.16, 51.50, 52.90), "retrain": (93.06, 0.5, 54.90),
                "scrub": (99.82, 43.2, 65.3), "scrub_attention": (99.88, 41.20, 64.0),
                "scrub_similarity": (99.83, 38.0, 66.4)}


# Column headers that say which definition a table shows.
HEADERS = {"retain_acc": "retain %", "forget_acc": "forget %", "test_acc": "test %",
           "forget_true_acc": "forget vs true labels %", "mia_loss": "loss-MIA %",
           "mia_efficacy": "MIA-efficacy % (SVC on confidence)",
           "avg_gap": "Avg. Gap % (SalUn: forget, retain, test, MIA-efficacy)",
           "avg_gap_5": "Avg. Gap, 5 gaps (+ loss-MIA) %", "cost_ratio": "× Retrain",
           "test_forget_acc": "test, forgotten class %"}

# What notebooks 02 (RB) and 03 (RC) report: the same code, one entry per scenario.
SCENARIO_REPORTS = {
    "rb": {"stem": "02_rb_cifar10", "title": "02 · Removing bias on CIFAR-10 (Table 1)", "paper": PAPER_TABLE1,
           "metrics": ["retain_acc", "forget_acc", "test_acc", "mia_loss", "mia_efficacy", "avg_gap", "avg_gap_5",
                       "js_forget", "seconds", "cost_ratio"]},
    "rc": {"stem": "03_rc_scrub", "title": "03 · Resolving confusion on Tiny-ImageNet-20 (Table 2)",
           "paper": PAPER_TABLE2,
           "metrics": ["retain_acc", "forget_acc", "test_acc", "forget_true_acc", "confusion_0_to_1",
                       "confusion_1_to_0", "mia_loss", "mia_efficacy", "avg_gap", "avg_gap_5", "js_forget",
                       "seconds", "cost_ratio"]},
    "cf": {"stem": "08_class_forgetting", "title": "08 · Class forgetting on CIFAR-10", "paper": None,
           "metrics": ["retain_acc", "forget_acc", "test_acc", "test_forget_acc", "mia_loss", "mia_efficacy",
                       "avg_gap", "avg_gap_5", "js_forget", "seconds", "cost_ratio"]},
}
# Per column, what "best" means in a report table (:func:`mark_best`): the smallest value, or the
# value closest to Retrain's (an accuracy or attack below Retrain's is over-forgetting, not better)
SMALLEST = {"avg_gap", "avg_gap_5", "js_forget", "js_test", "l2_forget", "l2_test", "seconds", "cost_ratio",
            "gap_forget_acc", "gap_retain_acc", "gap_test_acc", "gap_mia_loss", "gap_mia_efficacy"}
CLOSEST_TO_RETRAIN = {"retain_acc", "forget_acc", "test_acc", "test_forget_acc", "forget_true_acc",
                      "confusion_0_to_1", "confusion_1_to_0", "mia_loss", "mia_efficacy", "mia_efficacy_conf_entropy"}


def cost_footnote(rows: list[dict], metrics: list[str]) -> str:
    """A line under a table whose "× Retrain" column is n/a for some rows: their method and Retrain
    were timed under different conditions (see :func:`unlearnlib.study.score`); empty otherwise."""
    notes = [r["cost_note"] for r in rows if "cost_ratio" in metrics and r.get("cost_note")]
    if not notes:
        return ""
    return (f"\n× Retrain is n/a for {len(notes)} of {len(rows)} rows: the method and Retrain were timed "
            f"under different conditions (threads; processes training at once), e.g. {notes[0]}. "
            "The seconds column stands; `python -m unlearnlib bench` times the methods and Retrain alone.\n")


def scenario_report(rows: list[dict], scenario: str, profile: str, results_dir, figures_dir, tag: str):
    """The scenario's table (mean ± std over seeds, the paper's numbers beside; Retrain first, then
    sorted by Avg. Gap, the best non-Retrain entry of each column in bold) and accuracy bars, saved as ``<stem>_table_<tag>.md/.csv`` and ``<stem>_accuracy_<tag>.png/.pdf``.
    Returns ``(markdown, figure)``."""
    spec = SCENARIO_REPORTS[scenario]
    metrics = spec["metrics"]
    table = method_table(rows, metrics, paper=spec["paper"])
    cols = ["label", "n"] + metrics + (["paper"] if spec["paper"] else [])
    heads = ["method", "n"] + [HEADERS.get(m, m) for m in metrics] + (["paper (r/f/t %)"] if spec["paper"] else [])
    md = save_table(table, cols, heads, results_dir, f"{spec['stem']}_table_{tag}", marked=mark_best(table, metrics),
                    footer=cost_footnote(rows, metrics))
    fig = plot_accuracy_bars(table, f"{spec['title']} ({scenario}, {profile} profile)")
    save_figure(fig, figures_dir, f"{spec['stem']}_accuracy_{tag}")
    return md, fig


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (Colab, Jupyter, papermill), whose inline backend
    shows each figure under its cell."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython
    return getattr(get_ipython(), "kernel", None) is not None


def _plt():
    """pyplot. Outside a kernel (scripts, tests) it is put on the file-only Agg backend; inside
    one the kernel's backend is left alone, so that figures show inline in the notebook and are
    saved to files by :func:`save_figure` as well."""
    import matplotlib
    if not _in_kernel():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, folder, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` to ``folder`` with date-free metadata."""
    out = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "ModDate": None,
                                                           "Producer": None, "Creator": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120, bbox_inches="tight", metadata=meta)
        path = Path(folder) / f"{stem}.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out


def save_table(table: list[dict], columns: list[str], headers: list[str], folder, stem: str,
               marked: list[dict] | None = None, footer: str = "") -> str:
    """Write ``stem.md`` (from ``marked`` when given: :func:`mark_best`'s copy, then ``footer``) and
    ``stem.csv`` (plain values); returns the Markdown."""
    md = to_markdown(marked if marked is not None else table, columns, headers) + footer
    atomic_write_bytes(Path(folder) / f"{stem}.md", md.encode())
    atomic_write_bytes(Path(folder) / f"{stem}.csv", to_csv(table, columns).encode())
    return md


VARIANT_LABELS = {"official": "official settings", "tuned": "tuned on validation"}


def mark_best(table: list[dict], metrics: list[str]) -> list[dict]:
    """A copy of ``table`` with, per column of ``metrics``, the best entry of a method (neither
    Retrain nor the original model) in bold: the smallest mean for gaps, distances and cost
    (:data:`SMALLEST`), the mean closest to Retrain's for accuracies and attacks
    (:data:`CLOSEST_TO_RETRAIN`). Ties are all marked; other columns are left alone."""
    out = [dict(r) for r in table]
    ref = next((r for r in table if r["method"] == "retrain"), None)
    cands = [r for r in out if r["method"] not in ("retrain", "original")]
    for m in metrics:
        if m in SMALLEST:
            def score(r, m=m):
                return r[f"{m}_mean"]
        elif m in CLOSEST_TO_RETRAIN and ref is not None and not math.isnan(ref[f"{m}_mean"]):
            def score(r, m=m):
                return abs(r[f"{m}_mean"] - ref[f"{m}_mean"])
        else:
            continue
        vals = [(score(r), r) for r in cands if not math.isnan(r.get(f"{m}_mean", math.nan))]
        if not vals:
            continue
        best = min(v for v, _ in vals)
        for v, r in vals:
            if math.isclose(v, best, rel_tol=0, abs_tol=1e-12):
                r[m] = f"**{r[m]}**"
    return out


def method_table(rows: list[dict], metrics: list[str], paper: dict | None = None) -> list[dict]:
    """Mean ± std over seeds per method (and per settings variant, when rows carry more than one:
    "official" and "tuned"), with the paper's numbers: Retrain first, then by mean Avg. Gap to
    Retrain (``avg_gap``; rows without it last, in :func:`method_order`). The original model and
    Retrain appear once, whatever the variant."""
    order = method_order()
    rows = [{**r, "variant": r.get("variant", "official")} for r in rows]
    rows = [r for r in rows if r["variant"] == "official" or r["method"] not in ("original", "retrain")]
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v != "official", v))
    table = summarize(rows, list(dict.fromkeys([*metrics, "avg_gap"])), by=("method", "variant"))
    table.sort(key=lambda r: (r["method"] != "retrain",
                              r["avg_gap_mean"] if not math.isnan(r["avg_gap_mean"]) else math.inf,
                              order.index(r["method"]) if r["method"] in order else len(order),
                              variants.index(r["variant"])))
    for r in table:
        r["label"] = label(r["method"])
        if len(variants) > 1 and r["method"] not in ("original", "retrain"):
            r["label"] += f" ({VARIANT_LABELS.get(r['variant'], r['variant'])})"
        if paper is not None:
            p = paper.get(r["method"])
            r["paper"] = " / ".join(f"{v:.1f}" for v in p) if p else "n/a"
    return table


def plot_training_history(history: list[dict], title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], marker="o", ms=3, label="train loss")
    ax2 = ax.twinx()
    ax2.plot(ep, [100 * h["acc"] for h in history], color="C1", marker="s", ms=3, label="train acc")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax2.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    return fig


def plot_forget_vs_test(rows: list[dict]):
    """Forget accuracy (x) against test accuracy (y), one panel per scenario in ``rows``: each
    method's mean over seeds (bars: ±1 std), official settings filled, "tuned" rows hollow;
    Retrain a black star, the original model a grey cross. In class forgetting the test accuracy is
    the other classes'. The closer a method sits to the star, the closer it is to Retrain."""
    plt = _plt()
    names = {"rb": "RB: removing bias (CIFAR-10)", "rc": "RC: resolving confusion (Tiny-ImageNet-20)",
             "cf": "CF: class forgetting (CIFAR-10)"}
    scen = [sc for sc in ("rb", "rc", "cf") if any(r["scenario"] == sc for r in rows)]
    scen += sorted({r["scenario"] for r in rows} - set(scen))
    fig, axes = plt.subplots(1, max(1, len(scen)), figsize=(4.6 * max(1, len(scen)), 4), squeeze=False)
    for ax, sc in zip(axes[0], scen):
        table = method_table([r for r in rows if r["scenario"] == sc], ["forget_acc", "test_acc"])
        for i, r in enumerate(table):
            x, y = 100 * r["forget_acc_mean"], 100 * r["test_acc_mean"]
            xe, ye = 100 * r["forget_acc_std"], 100 * r["test_acc_std"]
            if r["method"] == "retrain":
                kw = dict(marker="*", color="black", ms=14, zorder=5)
            elif r["method"] == "original":
                kw = dict(marker="X", color="grey", ms=9)
            else:
                c = f"C{method_order().index(r['method']) % 10}" if r["method"] in method_order() else "C9"
                kw = dict(marker="o" if r["variant"] == "official" else "s", color=c, ms=7,
                          mfc=c if r["variant"] == "official" else "none")
            ax.errorbar(x, y, xerr=xe, yerr=ye, ls="none", elinewidth=0.8, capsize=2, label=r["label"], **kw)
            ax.annotate(r["label"].replace(" (official settings)", "").replace(" (tuned on validation)", " (tuned)"),
                        (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("forget accuracy (%)")
        ax.set_ylabel("test accuracy (%)" + (", other classes" if sc == "cf" else ""))
        ax.set_title(names.get(sc, sc), fontsize=9)
        ax.grid(alpha=0.3)
    return fig


def plot_accuracy_bars(table: list[dict], title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    names = ["retain_acc", "forget_acc", "test_acc"]
    x = np.arange(len(table))
    for i, m in enumerate(names):
        ax.bar(x + (i - 1) * 0.27, [100 * r[f"{m}_mean"] for r in table], 0.27,
               yerr=[100 * r[f"{m}_std"] for r in table], label=m.replace("_acc", ""), capsize=2)
    ax.set_xticks(x, [r["label"] for r in table], rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(ncol=3, fontsize=8)
    return fig


def plot_loss_curves(rows: list[dict], methods=None):
    """Figure 2: mean max-loss and min-loss per epoch (mean over seeds, band = ±1 std) of
    ``methods`` (default: the registry's SCRUB family)."""
    from .methods import method_names
    plt = _plt()
    methods = method_names("scrub") if methods is None else methods
    scen = sorted({r["scenario"] for r in rows})
    fig, axes = plt.subplots(1, len(scen), figsize=(5 * len(scen), 3.4), squeeze=False)
    for ax, sc in zip(axes[0], scen):
        for m in methods:
            hists = [r["history"] for r in rows if r["scenario"] == sc and r["method"] == m and r.get("history")]
            if not hists:
                continue
            for key, style in (("max_loss", "--"), ("min_loss", "-")):
                curves = [[h.get(key, np.nan) for h in hist] for hist in hists]
                n = max(len(c) for c in curves)
                arr = np.array([c + [np.nan] * (n - len(c)) for c in curves], dtype=float)
                ep = np.arange(1, n + 1)
                ok = ~np.all(np.isnan(arr), 0)
                mean = np.nanmean(arr[:, ok], 0)
                line, = ax.plot(ep[ok], mean, style, marker="o", ms=3,
                                label=f"{label(m)} {key.replace('_', '-')}")
                if len(arr) > 1:
                    std = np.nanstd(arr[:, ok], 0)
                    ax.fill_between(ep[ok], mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_title(f"{sc.upper()}: SCRUB losses per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss")
        ax.legend(fontsize=7)
    return fig


def plot_distillation_types():
    """Figure 1's counterpart: logits-only KD, attention over several layers, similarity on layer4."""
    plt = _plt()
    from matplotlib.patches import FancyArrowPatch, Rectangle
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    titles = ["Vanilla SCRUB: logits (KL, eq. 4)", "Attention SCRUB: layer1-4 maps (eqs. 6-7)",
              "Similarity SCRUB: layer4 Gram (eqs. 6-7)"]
    taps = [[], [0, 1, 2, 3], [3]]
    for ax, title, tap in zip(axes, titles, taps):
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 6)
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        for row, (name, y) in enumerate((("teacher (frozen)", 4.2), ("student", 0.8))):
            for i in range(4):
                ax.add_patch(Rectangle((0.5 + 1.9 * i, y), 1.4, 1, fc="#dde" if row == 0 else "#ded", ec="k"))
                ax.text(1.2 + 1.9 * i, y + 0.5, f"layer{i + 1}", ha="center", va="center", fontsize=7)
            ax.text(8.3, y + 0.5, "logits", ha="center", va="center", fontsize=7,
                    bbox=dict(fc="#fed", ec="k"))
            ax.text(0.2, y + 1.3, name, fontsize=7)
        ax.add_patch(FancyArrowPatch((8.3, 4.0), (8.3, 2.0), arrowstyle="<->", mutation_scale=10, color="C3"))
        ax.text(8.5, 3.0, "KL", color="C3", fontsize=8)
        for i in tap:
            ax.add_patch(FancyArrowPatch((1.2 + 1.9 * i, 4.0), (1.2 + 1.9 * i, 2.0), arrowstyle="<->",
                                         mutation_scale=10, color="C0"))
            ax.text(1.35 + 1.9 * i, 3.0, "MSE", color="C0", fontsize=7)
    return fig


def plot_loss_distributions(losses: dict[str, dict[str, np.ndarray]]):
    """Per-method histograms of per-example cross-entropy on retain, forget and test."""
    plt = _plt()
    methods = [m for m in method_order() if m in losses]
    cols = 4
    rows_n = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), squeeze=False)
    allv = np.concatenate([v for d in losses.values() for v in d.values()])
    bins = np.linspace(0, float(np.quantile(allv, 0.99)) + 1e-6, 30)
    for ax, m in zip(axes.flat, methods):
        for part in ("retain", "forget", "test"):
            ax.hist(np.clip(losses[m][part], 0, bins[-1]), bins=bins, density=True, alpha=0.45, label=part)
        ax.set_title(label(m), fontsize=9)
        ax.set_xlabel("cross-entropy", fontsize=8)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_saliency_grid(images: np.ndarray, maps: dict[str, np.ndarray], titles: list[str]):
    """Rows: images; columns: the input, then each model's map (already normalised to [0, 1])."""
    plt = _plt()
    names = list(maps)
    n = len(images)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.6 * (len(names) + 1), 1.6 * n), squeeze=False)
    for i in range(n):
        axes[i][0].imshow(images[i].transpose(1, 2, 0))
        axes[i][0].set_ylabel(titles[i], fontsize=6)
        for j, name in enumerate(names):
            axes[i][j + 1].imshow(maps[name][i], cmap="inferno")
            if i == 0:
                axes[i][j + 1].set_title(name, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("input", fontsize=7)
    fig.tight_layout()
    return fig


def plot_beta(rows: list[dict]):
    """Forget accuracy, Avg. Gap to Retrain on test and on validation against the feature weight
    beta (symlog axis, 0 included), one line per feature variant; bands are ±1 std over seeds."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for method in sorted({r["method"] for r in rows}, key=method_order().index):
        rs = [r for r in rows if r["method"] == method]
        betas = sorted({r["beta"] for r in rs})
        for ax, key, title in zip(axes, ("forget_acc", "avg_gap", "avg_gap_val"),
                                  ("forget accuracy %", "Avg. Gap to Retrain, test %", "Avg. Gap to Retrain, validation %")):
            vals = [[100 * r[key] for r in rs if r["beta"] == b] for b in betas]
            m = np.array([np.mean(v) for v in vals])
            sd = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals])
            ax.plot(betas, m, marker="o", label=label(method))
            ax.fill_between(betas, m - sd, m + sd, alpha=0.2)
            ax.set_title(title)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("beta (weight of the feature term)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_sensitivity(rows: list[dict], param: str = "lr"):
    """Avg. Gap to Retrain and test accuracy against ``param`` (log scale), per method, ±1 std over seeds."""
    plt = _plt()
    methods = [m for m in method_order() if any(r["method"] == m for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for m in methods:
        xs = sorted({r[param] for r in rows if r["method"] == m})
        for ax, key in zip(axes, ("avg_gap", "test_acc")):
            vals = [[100 * r[key] for r in rows if r["method"] == m and r[param] == x] for x in xs]
            mean = np.array([np.mean(v) for v in vals])
            std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals])
            line, = ax.plot(xs, mean, marker="o", ms=3, label=label(m))
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    for ax, lab in zip(axes, ("Avg. Gap to Retrain (%)", "test accuracy (%)")):
        ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
