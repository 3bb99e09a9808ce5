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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/07_sweep.ipynb)
#
# # 07 · Hyperparameter sensitivity: a learning-rate sweep on Ray, and the tuned preset
#
# Unlearning methods are sensitive to their learning rate: too low and nothing is forgotten, too
# high and the model is damaged. This notebook sweeps the learning rate of several methods over
# seeds (each point a Ray task; locally by default, on a cluster with `RAY_ADDRESS`), plots the
# Avg. Gap to Retrain and the test accuracy against it, and writes the configuration with the
# smallest Avg. Gap per method as a preset that `unlearn(..., preset=name)` loads.

# %% [markdown]
# **Set-up.** In Colab this installs unlearnlib with its notebook extras and Ray; anywhere else it does nothing.

# %%
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ray",
                    "unlearnlib[notebooks] @ git+https://github.com/unlearnlib/unlearnlib@v0.1.0"], check=True)

# %% [markdown]
# **Imports.** Everything algorithmic comes from `unlearnlib`; this notebook only calls and plots.
# The last line records the names defined so far, so that a misspelled papermill parameter
# (`-p sede 2`) is caught below instead of being silently ignored.

# %%
from unlearnlib.notebook import check_parameters
from unlearnlib.sweep import run_sweep, select_presets, sensitivity_rows
from unlearnlib.presets import write_presets
from unlearnlib.results import ResultsStore
from unlearnlib.report import label, plot_sensitivity, save_figure, save_table
from IPython.display import Markdown, display
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
scenario = "rb"                       # "rb" or "rc"
methods = ["finetune", "neggrad_plus", "scrub"]
lrs = [0.001, 0.005, 0.02]            # learning rates to try (log-spaced)
seeds = [0, 1]                        # seeds per point
seed = None                           # one seed only
profile = "auto"
data_dir = None
run_dir = None                        # None: runs/<profile>; the sweep writes to <run_dir>/sweep
preset = None                         # write the chosen configs under this preset name (e.g. "rb-resnet18")
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
# **Run the grid** (methods × learning rates × seeds). Points already in the sweep's results store
# are skipped, so an interrupted sweep restarts where it stopped. Each seed's original and Retrain
# come from this run's folder when notebooks 02/03 trained them at the same recipe (checked), else
# the sweep trains them.

# %%
spec = {"name": f"lr-{P['scenario']}", "scenario": P["scenario"], "profile": P["profile"],
        "grid": {"method": P["methods"], "lr": P["lrs"], "seed": P["seeds"]}}
summary = run_sweep(spec, P["run_dir"] / "sweep", data_dir=P["data_dir"], models_from=P["run_dir"])
summary

# %% [markdown]
# **Sensitivity**: Avg. Gap to Retrain (lower is better) and test accuracy against the learning rate; bands are ±1 std over seeds.

# %%
rows = [r for r in ResultsStore(P["run_dir"] / "sweep" / "results.jsonl").rows() if r.get("sweep") == spec["name"]]
fig = plot_sensitivity(sensitivity_rows(rows, "lr"), "lr")
save_figure(fig, P["figures_dir"], f"07_sensitivity_{P['scenario']}_{P['tag']}")

# %% [markdown]
# **The selection**: per method, the learning rate with the smallest Avg. Gap to Retrain on the *validation* set (SalUn's four gaps, validation in place of test), averaged over seeds. The reported test set is never read by the selection.

# %%
chosen = select_presets(rows, P["scenario"])
table = [{"method": label(m), "lr": c["overrides"].get("lr"), "avg_gap_val": f"{100 * c['avg_gap_val']:.2f}",
          "seeds": c["n_seeds"]} for m, c in sorted(chosen.items())]
display(Markdown(save_table(table, ["method", "lr", "avg_gap_val", "seeds"], ["method", "best lr", "Avg. Gap on validation (%)", "seeds"],
                            P["results_dir"], f"07_presets_{P['scenario']}_{P['tag']}")))
if P["preset"]:
    print("preset written to", write_presets(chosen, P["preset"]))
