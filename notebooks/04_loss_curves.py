# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/04_loss_curves.ipynb)
#
# # 04 · SCRUB's max- and min-losses per epoch (Figure 2), the distillation types (Figure 1), and the feature weight beta
#
# Figure 2 of the paper plots the max-step loss rising and the min-step loss falling as SCRUB runs. The curves here come from the per-epoch histories stored with each result row (mean over seeds, band = ±1 std). The figure of distillation types shows what each SCRUB variant matches between teacher and student.

# %% [markdown]
# **Set-up.** In Colab this installs unlearnlib with its notebook extras (Colab's own torch is
# kept); anywhere else it does nothing.

# %%
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "unlearnlib[notebooks] @ git+https://github.com/unlearnlib/unlearnlib@v0.1.0"], check=True)

# %% [markdown]
# **Imports.** Everything algorithmic comes from `unlearnlib`; this notebook only calls and plots.
# The last line records the names defined so far, so that a misspelled papermill parameter
# (`-p sede 2`) is caught below instead of being silently ignored.

# %%
from unlearnlib.notebook import check_parameters
from unlearnlib.study import beta_sweep, run_scenario, select_beta
from unlearnlib.methods import method_names
from unlearnlib.profiles import get_profile
from unlearnlib.report import label, plot_beta, plot_loss_curves, plot_distillation_types, save_figure, save_table
from IPython.display import Markdown, display
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
scenarios = ["rb", "rc"]  # which scenarios to plot
seeds = None           # None: the profile's seeds
seed = None            # one seed only
profile = "auto"
betas = None           # feature weights to sweep on RB; None: the profile's (paper-cpu: 0, 1, 10, 100, 1000, 3000; quick: none)
workers = None         # models trained at once in separate processes (each gets threads/workers on a CPU); None: the profile's
data_dir = None
run_dir = None
figures_dir = "figures"
results_dir = "results"
_declared = set(globals()) - _before

# %% [markdown]
# **Validate the parameters** before any compute: an unknown name, scenario, profile or a bad
# seed stops here with a `ValueError` naming the value and what is allowed.

# %%
P = check_parameters(globals(), _before, _declared)
P

# %% [markdown]
# **Results** of the SCRUB family (vanilla and the feature variants): read from the store, computed only if missing.

# %%
SCRUBS = method_names("scrub")
rows = [r for sc in P["scenarios"] for r in run_scenario(sc, P["seeds"], P["profile"], methods=SCRUBS,
                                                      run_dir=P["run_dir"], data_dir=P["data_dir"])
        if r["method"] in SCRUBS]
for r in rows[:3]:
    print(r["scenario"], r["method"], r["seed"], [(h["epoch"], round(h.get("max_loss", float("nan")), 3), round(h["min_loss"], 3)) for h in r["history"]])

# %% [markdown]
# **Figure 2**: dashed lines are max-losses (d on D_f, plus the feature term for the variants),
# solid lines min-losses (alpha·d + gamma·CE on D_r, plus the feature term).

# %%
fig = plot_loss_curves(rows)
save_figure(fig, P["figures_dir"], f"04_loss_curves_{P['tag']}")

# %% [markdown]
# **Figure 1**: logits-only distillation (vanilla SCRUB), attention maps over layer1–layer4
# (Attention SCRUB) and the batch similarity matrix of layer4 (Similarity SCRUB).

# %%
fig = plot_distillation_types()
save_figure(fig, P["figures_dir"], "04_distillation_types")

# %% [markdown]
# **The feature weight beta.** Eqs. (6) and (7) put no weight on the feature term, which means
# beta = 1; RepDistiller recommends 1000 (attention) and 3000 (similarity). Here both variants run
# at each beta on the RB split with the official SCRUB settings otherwise, for every seed; at
# beta = 0 the update is vanilla SCRUB's exactly. Left: forget accuracy; middle: Avg. Gap to
# Retrain on the test set (reported, not used to choose); right: the same on the validation set,
# which picks the default. Bands are ±1 std over seeds.

# %%
BETAS = list(P["betas"] if P["betas"] is not None else get_profile(P["profile"]).betas)
if BETAS:
    brows = beta_sweep("rb", P["seeds"], P["profile"], P["run_dir"], BETAS, data_dir=P["data_dir"],
                       workers=P["workers"])
    fig = plot_beta(brows)
    save_figure(fig, P["figures_dir"], f"04_beta_rb_{P['tag']}")
    picked = select_beta(brows)
    table = [{"method": label(r["method"]), "beta": f"{r['beta']:g}",
              "forget": f"{100 * r['forget_acc']:.1f}", "avg_gap": f"{100 * r['avg_gap']:.2f}",
              "avg_gap_val": f"{100 * r['avg_gap_val']:.2f}", "seed": r["seed"]} for r in brows]
    display(Markdown(save_table(table, ["method", "beta", "seed", "forget", "avg_gap", "avg_gap_val"],
                                ["method", "beta", "seed", "forget %", "Avg. Gap test %", "Avg. Gap validation %"],
                                P["results_dir"], f"04_beta_rb_{P['tag']}")))
    for m, c in picked.items():
        print(f"{label(m)}: smallest Avg. Gap on validation at beta = {c['beta']:g} "
              f"({100 * c['avg_gap_val']:.2f}% over {c['n_seeds']} seeds)")
else:
    print(f"no beta sweep for profile {P['profile']!r} (pass -p betas '[1, 100]' to run one)")
