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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/02_rb_cifar10.ipynb)
#
# # 02 · Removing bias on CIFAR-10 (Table 1)
#
# Paper section 4.3. The RB split draws 5,000 training and 1,000 validation images from CIFAR-10 with the seed; 10% of the training images, 50 per class, form the forget set. Every registered method runs from the same original model and are compared against Retrain, the gold standard: the best method is the one *closest to Retrain*, not the one with the lowest forget accuracy.

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
from unlearnlib.study import run_scenario, run_tuned
from unlearnlib.report import describe_tuning, scenario_report
from IPython.display import Markdown, display
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
scenario = "rb"        # "rb" (notebook 02) or "rc" (notebook 03): which table to build
seeds = None           # list of seeds; None: the profile's seeds (0, 1, 2)
seed = None            # run this one seed only (overrides seeds), e.g. -p seed 2
profile = "auto"       # "auto" (paper on a GPU, else quick), "quick" (2 CPU cores), "paper-cpu", "paper" (full size, GPU) or "paper-dry" (its dry run)
data_dir = None        # folder with the offline archives
workers = None         # models trained at once in separate processes (each gets threads/workers on a CPU); None: the profile's
methods = None         # registered method names to run; None: every default method (run-all --scope paper: the paper's seven)
tuned = True           # also the "tuned on validation" rows, where the profile has a grid (paper-cpu)
run_dir = None         # checkpoints and results; None: runs/<profile>
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
# **Run every method on every seed.** For each seed: the original model (reused from notebook
# 01 when its checkpoint matches), Retrain, then each method; each is evaluated against
# Retrain and appended to the results store. Rows already stored are not recomputed.

# %%
rows = run_scenario(P["scenario"], P["seeds"], P["profile"], run_dir=P["run_dir"], data_dir=P["data_dir"],
                    methods=P["methods"], workers=P["workers"])
print(f"{len(rows)} result rows, seeds {sorted({r['seed'] for r in rows})}, device {rows[0]['device']}")

# %% [markdown]
# **Tuned on validation** (profiles with a grid, e.g. `paper-cpu`): each method's learning rate
# (and, for the SCRUB family, `max_steps`) is picked from the profile's small grid on seed 0 by
# the smallest Avg. Gap to Retrain *on the validation split*, then applied to every seed as a
# second row. The test set is never read by the choice.

# %%
picked, tuned_rows = run_tuned(P["scenario"], P["seeds"], P["profile"], P["run_dir"], data_dir=P["data_dir"],
                               methods=P["methods"], workers=P["workers"]) \
    if P["tuned"] else ({}, [])
print(describe_tuning(picked) or "no tuning grid for this profile: official settings only")
rows += tuned_rows

# %% [markdown]
# **The table**: mean ± std over seeds, with the paper's own retain / forget / test numbers
# beside ours, and the accuracies per method (bars: mean over seeds; whiskers: std). Saved to
# `results/` (Markdown and CSV) and `figures/` (PNG and PDF).

# %%
md, fig = scenario_report(rows, P["scenario"], P["profile"], P["results_dir"], P["figures_dir"], P["tag"])
display(Markdown(md))
