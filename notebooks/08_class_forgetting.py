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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/08_class_forgetting.ipynb)
#
# # 08 · Class forgetting on CIFAR-10
#
# The standard class-forgetting benchmark of SCRUB, SalUn and SSD, beside the paper's two scenarios. The `cf` split of each seed is RB's CIFAR-10 split (the same 5,000 training images, so RB's original model is reused) with **every training image of one class** as the forget set: the class is drawn with the seed (`make_split("cf", seed, forget_class=3)` picks one by hand). Retain is the other classes' images. Test accuracy is reported on the other classes (`test_acc`, SalUn's TA) and on the forgotten class (`test_forget_acc`); Retrain, trained without the class, scores 0% on both of the forgotten class's sets. Every method is compared with Retrain: the best is the one closest to it.

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
from unlearnlib.study import run_scenario, stored_rows
from unlearnlib.splits import make_split
from unlearnlib.report import plot_forget_vs_test, save_figure, scenario_report
from IPython.display import Markdown, display
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
seeds = None           # list of seeds; None: the profile's seeds (0, 1, 2)
seed = None            # run this one seed only (overrides seeds), e.g. -p seed 2
profile = "auto"       # "auto" (paper on a GPU, else quick), "quick" (2 CPU cores), "paper-cpu", "paper" (full size, GPU) or "paper-dry" (its dry run)
data_dir = None        # folder with the offline archives
workers = None         # models trained at once in separate processes (each gets threads/workers on a CPU); None: the profile's
run_dir = None         # checkpoints and results; None: runs/<profile>
figures_dir = "figures"
results_dir = "results"
_declared = set(globals()) - _before

# %% [markdown]
# **Validate the parameters** before any compute: an unknown name, profile or a bad seed stops
# here with a `ValueError` naming the value and what is allowed.

# %%
P = check_parameters(globals(), _before, _declared)
P

# %% [markdown]
# **The splits**: which class each seed forgets, and the sizes.

# %%
for s in P["seeds"]:
    print(make_split("cf", s, P["data_dir"], profile=P["profile"]).description)

# %% [markdown]
# **Run every method on every seed.** For each seed: RB's original model (reused: the same
# training set), Retrain without the forgotten class, then each method at its official settings
# (CIFAR-10's); each is evaluated against Retrain and appended to the results store. Rows already
# stored are not recomputed.

# %%
rows = run_scenario("cf", P["seeds"], P["profile"], run_dir=P["run_dir"], data_dir=P["data_dir"],
                    workers=P["workers"])
print(f"{len(rows)} result rows, seeds {sorted({r['seed'] for r in rows})}, device {rows[0]['device']}")

# %% [markdown]
# **The class-forgetting table**: mean ± std over seeds, Retrain first, then every method by its
# Avg. Gap to Retrain (SalUn's four gaps: forget, retain, test and MIA-efficacy); the best
# method of each column in bold (closest to Retrain for accuracies and attacks, smallest for
# gaps and cost). Saved to `results/` (Markdown and CSV) and `figures/` (PNG and PDF).

# %%
md, fig = scenario_report(rows, "cf", P["profile"], P["results_dir"], P["figures_dir"], P["tag"])
display(Markdown(md))

# %% [markdown]
# **Forget accuracy against test accuracy**, per method and scenario: the paper's two scenarios
# (official settings, from notebooks 02 and 03 when they have run on this profile and run folder;
# read from the store, never computed here) and class forgetting. Retrain is the black star: the
# closer a method sits to it, the better it unlearns.

# %%
every = stored_rows(["rb", "rc"], P["seeds"], P["profile"], P["run_dir"], variant="official") + rows
fig = plot_forget_vs_test(every)
save_figure(fig, P["figures_dir"], f"08_forget_vs_test_{P['tag']}")
