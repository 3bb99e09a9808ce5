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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/06_privacy.ipynb)
#
# # 06 · Privacy: membership inference and the gap to Retrain
#
# The paper reports accuracies only; its future-work section asks for membership-inference attacks and the distance to a retrained model. Here: the loss attack of the SCRUB code (forget vs test), SalUn's MIA-efficacy (share of the forget set an attacker trained on retain vs test calls non-member), the Avg. Gap to Retrain and the JS divergence of outputs, and the per-example loss distributions that the attacks exploit. A good unlearning method matches Retrain here: a loss attack near Retrain's, not near 0% or 100%.

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
from unlearnlib.study import run_scenario, load_unlearned
from unlearnlib.splits import make_split
from unlearnlib.metrics import loss_distributions
from unlearnlib.report import HEADERS, method_table, method_order, plot_loss_distributions, save_figure, save_table
from IPython.display import Markdown, display
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
scenario = "rb"        # "rb" or "rc"
seeds = None           # None: the profile's seeds
seed = None            # one seed only
profile = "auto"
data_dir = None
workers = None         # models trained at once in separate processes (each gets threads/workers on a CPU); None: the profile's
methods = None         # registered method names to run; None: every default method (run-all --scope paper: the paper's seven)
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
# **Results**: every method on every seed, read from the store (computed only if missing).

# %%
rows = run_scenario(P["scenario"], P["seeds"], P["profile"], run_dir=P["run_dir"], data_dir=P["data_dir"],
                    methods=P["methods"], workers=P["workers"])

# %% [markdown]
# **Privacy table**: attacks, their gaps to Retrain, the Avg. Gap (SalUn's four gaps; `avg_gap_5` adds the loss attack) and output distances (mean ± std over seeds). In RC the loss attack's non-members are the test images of classes 0 and 1 (`mia_nonmembers` in each row).

# %%
metrics = ["mia_loss", "gap_mia_loss", "mia_efficacy", "gap_mia_efficacy", "mia_efficacy_conf_entropy",
           "gap_forget_acc", "avg_gap", "avg_gap_5", "js_forget", "js_test", "l2_forget", "l2_test"]
table = method_table(rows, metrics)
md = save_table(table, ["label", "n"] + metrics, ["method", "n"] + [HEADERS.get(m, m) for m in metrics], P["results_dir"],
                f"06_privacy_{P['scenario']}_{P['tag']}")
display(Markdown(md))

# %% [markdown]
# **Loss distributions** of the first seed: a forget set whose losses look like the test set's
# (not like the retain set's) is what the attacks cannot tell apart from unseen data.

# %%
s0 = P["seeds"][0]
split = make_split(P["scenario"], s0, P["data_dir"], profile=P["profile"])
models = {m: load_unlearned(m, P["scenario"], s0, P["profile"], P["run_dir"], split) for m in method_order()
          if any(r["method"] == m for r in rows)}
fig = plot_loss_distributions(loss_distributions(models, split))
save_figure(fig, P["figures_dir"], f"06_loss_distributions_{P['scenario']}_{P['tag']}")
