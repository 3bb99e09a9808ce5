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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/05_saliency.ipynb)
#
# # 05 · Saliency maps on the confused classes (Figure 3)
#
# On the RC split, Captum's Saliency, Integrated Gradients and Grad-CAM (on `layer4`) explain the original, retrained and three SCRUB models on the same test images of classes 0 (goldfish) and 1 (fire salamander). Below the grids, one number per model: the mean Spearman rank correlation between its attributions and Retrain's. Retrain never saw the mislabelled images, so a model whose attributions move towards Retrain's has shed what the wrong labels taught it.

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
from unlearnlib.methods import method_names
from unlearnlib.saliency import compare_models, KINDS
from unlearnlib.report import plot_saliency_grid, save_figure, save_table
from IPython.display import Markdown, display
import torch
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
seed = 0               # which seed's models to explain
profile = "auto"
n_images = 4           # test images per confused class (0 and 1)
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
# **Models**: trained or loaded from the checkpoints that notebook 03 left.

# %%
MODELS = ["original", "retrain"] + method_names("scrub")
run_scenario("rc", [P["seed"]], P["profile"], methods=MODELS[1:], run_dir=P["run_dir"], data_dir=P["data_dir"])
split = make_split("rc", P["seed"], P["data_dir"], profile=P["profile"])
models = {m: load_unlearned(m, "rc", P["seed"], P["profile"], P["run_dir"], split) for m in MODELS}

# %% [markdown]
# **Images**: the first `n_images` test images of class 0 and of class 1, explained for their true class.

# %%
pick = torch.cat([torch.nonzero(split.test.labels == c).flatten()[:P["n_images"]] for c in (0, 1)])
images, targets = split.test.images[pick], split.test.labels[pick]
maps, sim = compare_models(models, images, targets)
titles = [f"class {int(t)}" for t in targets]

# %% [markdown]
# **Grids**, one per attribution method: rows are images, columns the input and each model.

# %%
for kind in KINDS:
    fig = plot_saliency_grid(images.numpy(), maps[kind], titles)
    save_figure(fig, P["figures_dir"], f"05_saliency_{kind}_{P['tag']}")

# %% [markdown]
# **Similarity to Retrain**: mean rank correlation of each model's maps with Retrain's (1 = same ranking).

# %%
md = save_table(sim, ["kind", "model", "rank_corr_to_retrain"], ["attribution", "model", "rank corr. to Retrain"],
                P["results_dir"], f"05_saliency_similarity_{P['tag']}")
display(Markdown(md))
