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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/unlearnlib/unlearnlib/blob/v0.1.0/notebooks/01_train_original.ipynb)
#
# # 01 · Train the original model
#
# The model every unlearning method starts from: a CIFAR ResNet-18 trained on the whole training set of a scenario's split (retain + forget), for one seed. The checkpoint is saved as safetensors with its metadata (architecture, split fingerprint, config hash, git commit) and reused by the later notebooks whenever that metadata matches.

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
# **In Colab: keep the run on Google Drive.** A Colab session can disconnect. Mount Drive (the
# folder icon on the left, or `from google.colab import drive; drive.mount("/content/drive")`)
# and set the parameter `run_dir` below to a Drive folder, e.g.
# `run_dir = "/content/drive/MyDrive/unlearnlib/runs/paper"`, in this and every later notebook.
# Checkpoints, per-epoch resume files and the results store then live on Drive: after a
# disconnect, run the same cells again and each model resumes from its last finished epoch,
# while stored results are not recomputed. CIFAR-10 comes through torchvision's download, and
# Tiny-ImageNet-200 is downloaded once (checked against its published MD5 and size, resumable);
# only its first 20 classes are decoded, into the cache (`UNLEARNLIB_CACHE`).

# %% [markdown]
# **Imports.** Everything algorithmic comes from `unlearnlib`; this notebook only calls and plots.
# The last line records the names defined so far, so that a misspelled papermill parameter
# (`-p sede 2`) is caught below instead of being silently ignored.

# %%
from unlearnlib.notebook import check_parameters
from unlearnlib.study import epoch_printer, get_original
from unlearnlib.metrics import accuracy
from unlearnlib.report import plot_training_history, save_figure
_before = set(globals())

# %% [markdown]
# **Parameters** (papermill: `-p name value`). `profile="auto"` picks `paper` on a GPU and
# `quick` on a CPU. Paths are relative to the project root.

# %% tags=["parameters"]
scenario = "rb"        # "rb" (CIFAR-10, removing bias) or "rc" (Tiny-ImageNet-20, resolving confusion)
seed = 0               # split and training seed
profile = "auto"       # "auto" (paper on a GPU, else quick), "quick" (2 CPU cores), "paper-cpu", "paper" (full size, GPU) or "paper-dry" (its dry run)
data_dir = None        # folder with the offline archives; None: UNLEARNLIB_DATA, ../shared/data, or download
run_dir = None         # checkpoints and results; None: runs/<profile>
figures_dir = "figures"
_declared = set(globals()) - _before

# %% [markdown]
# **Validate the parameters** before any compute: an unknown name, scenario, profile or a bad
# seed stops here with a `ValueError` naming the value and what is allowed.

# %%
P = check_parameters(globals(), _before, _declared)
P

# %% [markdown]
# **Train, or load the matching checkpoint** (one line per training epoch). The split is built from the seed; its fingerprint
# travels with the checkpoint.

# %%
model, split, meta = get_original(P["scenario"], P["seed"], P["profile"], P["run_dir"], P["data_dir"],
                                  progress=epoch_printer(f"original {P['scenario']} seed {P['seed']}"))
print(split.description)
print(f"fingerprint {split.fingerprint[:16]}…, trained in {meta['seconds']:.1f} s on {meta['device']}")

# %% [markdown]
# **Accuracies** of the original model on its retain, forget and test sets.

# %%
{name: round(100 * accuracy(model, getattr(split, name)), 2) for name in ("retain", "forget", "test")}

# %% [markdown]
# **Training curve**, from the history stored in the checkpoint.

# %%
fig = plot_training_history(meta["history"], f"original model, {split.scenario.upper()} seed {split.seed} ({P['profile']})")
save_figure(fig, P["figures_dir"], f"01_training_{P['scenario']}_{P['tag']}")
