"""Command line: ``python -m unlearnlib run-all | train | sweep | bench | methods | colab-cells | repair-results``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NOTEBOOKS = ["01_train_original", "02_rb_cifar10", "03_rc_scrub", "04_loss_curves", "05_saliency",
             "06_privacy", "07_sweep", "08_class_forgetting"]


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


SCOPES = ("all", "paper")


def paper_methods() -> list[str]:
    """The paper's methods (Retrain, Finetune, NegGrad, NegGrad+ and the three SCRUBs): every default
    method but the ones that came after SCRUB (family ``"after_scrub"``)."""
    from .methods import get_method, method_names
    return [m for m in method_names(default_only=True) if get_method(m).family != "after_scrub"]


def run_all(profile: str, run_dir: str | None, data_dir: str | None, seeds: list[int] | None,
            kernel: str | None, workers: int | None = None, scope: str = "all") -> int:
    """Execute the notebook series in order with papermill under one run folder. ``workers``: models
    trained at once in separate processes (None: the profile's :attr:`~unlearnlib.profiles.Profile.workers`).
    ``scope``: ``"all"``, every default method and all three scenarios; ``"paper"``, the paper's
    experiment only (:func:`paper_methods` in notebooks 02, 03 and 06; no class forgetting, 08)."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    try:
        import papermill as pm
    except ImportError:
        print("run-all needs papermill: pip install 'unlearnlib[notebooks]'", file=sys.stderr)
        return 2
    from tqdm.auto import tqdm
    import os
    from .profiles import get_profile
    workers = get_profile(profile).workers if workers is None else workers
    # the notebooks' progress bars as text, so that they stream to this terminal (see runtime.progress_bar)
    os.environ["UNLEARNLIB_PROGRESS"] = "text"
    run = Path(run_dir or f"runs/{profile}").resolve()
    out_nb, figs, tables = run / "notebooks", run / "figures", run / "results"
    for d in (out_nb, figs, tables):
        d.mkdir(parents=True, exist_ok=True)
    src = _root() / "notebooks"
    t0 = time.perf_counter()
    bar = tqdm(NOTEBOOKS, desc=f"run-all ({profile}, scope {scope})", unit="notebook")
    for name in bar:
        bar.set_postfix_str(name)
        params = {"profile": profile, "run_dir": str(run), "figures_dir": str(figs),
                  "data_dir": data_dir}
        if name != "01_train_original":
            params["results_dir"] = str(tables)
        if seeds is not None and name not in ("01_train_original", "05_saliency", "07_sweep"):
            params["seeds"] = seeds
        if name in ("02_rb_cifar10", "03_rc_scrub", "04_loss_curves", "06_privacy",
                                        "08_class_forgetting"):
            params["workers"] = workers
        if scope == "paper" and name in ("02_rb_cifar10", "03_rc_scrub", "06_privacy"):
            params["methods"] = paper_methods()
        if scope == "paper" and name == "08_class_forgetting":
            print("08_class_forgetting skipped: --scope paper (class forgetting is not in the paper)")
            continue
        if name == "07_sweep" and seeds is None and get_profile(profile).sweep_seeds is not None:
            params["seeds"] = list(get_profile(profile).sweep_seeds)
        if name == "07_sweep" and get_profile(profile).tune:
            # this profile's notebooks 02/03 already pick each method's settings from a grid on
            # validation (the "tuned" rows); the separate Ray lr sweep would repeat that work
            print(f"07_sweep skipped: profile {profile!r} tunes on validation in notebooks 02/03")
            continue
        # the notebook's own output (one progress line per model: original, Retrain, each method)
        # is streamed to this terminal as it runs, so a long notebook never sits silent
        print(f"\n=== {name} ({profile}) ===", flush=True)
        pm.execute_notebook(str(src / f"{name}.ipynb"), str(out_nb / f"{name}.ipynb"),
                            parameters=params, cwd=str(src), progress_bar=False,
                            kernel_name=kernel, stdout_file=sys.stdout, stderr_file=sys.stderr)
    secs = time.perf_counter() - t0
    print(f"\nrun-all ({profile}, scope {scope}) finished in {secs / 60:.1f} min")
    print(f"  executed notebooks: {out_nb}")
    print(f"  figures:            {figs}")
    print(f"  tables:             {tables}")
    print(f"  results store:      {run / 'results.jsonl'}")
    print(f"  checkpoints:        {run / 'checkpoints'}")
    return 0


def train_cmd(scenario: str, seed: int, profile: str, run_dir: str | None, data_dir: str | None) -> int:
    from .metrics import accuracy
    from .study import get_original
    model, split, meta = get_original(scenario, seed, profile, run_dir or f"runs/{profile}", data_dir)
    print(split.description)
    print(f"trained in {meta['seconds']:.1f} s on {meta['device']}")
    for part in ("retain", "forget", "test"):
        print(f"  {part:6s} accuracy {100 * accuracy(model, getattr(split, part)):.2f}%")
    return 0


def sweep_cmd(args) -> int:
    from .results import ResultsStore
    from .presets import write_presets
    from .sweep import load_grid, run_sweep, select_presets
    spec = load_grid(args.grid)
    summary = run_sweep(spec, args.run_dir, address=args.address, data_dir=args.data_dir,
                        cpus_per_point=args.cpus_per_point)
    print(f"sweep {spec['name']}: {summary}")
    rows = [r for r in ResultsStore(Path(args.run_dir) / "results.jsonl").rows() if r.get("sweep") == spec["name"]]
    presets = select_presets(rows, spec["scenario"])
    for m, p in sorted(presets.items()):
        print(f"  {m:17s} best {p['overrides']}  Avg. Gap on validation {100 * p['avg_gap_val']:.2f}% "
              f"over {p['n_seeds']} seed(s)")
    if args.preset:
        print(f"  preset written to {write_presets(presets, args.preset)}")
    return 0


def methods_cmd() -> int:
    """Print the method registry: name, label, family, whether it runs by default (else only when
    named, ``methods=[...]``) and the equation or paper it implements."""
    from .methods import METHODS
    width = max(len(n) for n in METHODS)
    for name, rec in METHODS.items():
        runs = "default" if rec.default else "opt-in"
        print(f"{name:{width}s}  {rec.label:18s} {rec.family:11s} {runs:8s} {rec.source}")
    return 0


def main(argv=None) -> int:
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every argument goes to bench's own parser (argparse.REMAINDER drops a
        from .bench import main as bench_main  # leading option such as --profile: "unrecognized arguments")
        return bench_main(argv[1:])
    from .data import DataError
    from .profiles import PROFILES
    from .splits import SCENARIOS
    profiles, scenarios = list(PROFILES), list(SCENARIOS)
    ap = argparse.ArgumentParser(prog="python -m unlearnlib", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("run-all", help="run the whole notebook series with papermill")
    a.add_argument("--profile", default="quick", choices=profiles)
    a.add_argument("--run-dir", default=None, help="output folder (default runs/<profile>)")
    a.add_argument("--data-dir", default=None, help="folder with the offline archives")
    a.add_argument("--seeds", type=int, nargs="+", default=None)
    a.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    a.add_argument("--workers", type=int, default=None,
                   help="models trained at once in separate processes, each with threads/workers CPU threads "
                        "(default: the profile's; quick and paper-cpu 3; see unlearnlib.study)")
    a.add_argument("--scope", default="all", choices=SCOPES,
                   help="all: every default method, all three scenarios; paper: the paper's seven methods "
                        "in RB and RC (notebooks 02, 03 and 06 get the method list; 08, class forgetting, skipped)")
    t = sub.add_parser("train", help="train (or load) the original model and print its accuracies")
    t.add_argument("--scenario", default="rb", choices=scenarios)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--profile", default="quick", choices=profiles)
    t.add_argument("--run-dir", default=None)
    t.add_argument("--data-dir", default=None)
    w = sub.add_parser("sweep", help="run a hyperparameter/seed grid on Ray and write presets")
    w.add_argument("grid", help="YAML or JSON grid file (see unlearnlib.sweep)")
    w.add_argument("--run-dir", default="runs/sweep")
    w.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)")
    w.add_argument("--data-dir", default=None)
    w.add_argument("--cpus-per-point", type=int, default=1)
    w.add_argument("--preset", default=None, help="write the chosen configs as this preset name")
    sub.add_parser("methods", help="list the registered unlearning methods and their sources")
    c = sub.add_parser("colab-cells", help="regenerate every notebook's Colab badge and install line "
                                            "from unlearnlib.colab (pinned to this version's tag)")
    c.add_argument("--check", action="store_true", help="only report the notebooks that disagree (exit 1)")
    r = sub.add_parser("repair-results", help="keep a results file's good rows; move bad lines to FILE.bad")
    r.add_argument("file", help="the results.jsonl to repair")
    # listed for --help only: main() hands "bench ..." to unlearnlib.bench before parsing
    sub.add_parser("bench", help="speed benchmark and the GPU targets' check (python -m unlearnlib bench --help)")
    args = ap.parse_args(argv)
    try:
        return _dispatch(ap, args)
    except (ValueError, OSError, DataError) as e:  # bad values, missing files or data: a usage error
        ap.error(str(e))


def _dispatch(ap, args) -> int:
    if getattr(args, "seeds", None) is not None and any(s < 0 for s in args.seeds):
        ap.error(f"--seeds must be non-negative integers, got {args.seeds}")
    if args.cmd == "run-all":
        if args.workers is not None and args.workers < 1:
            ap.error(f"--workers must be >= 1, got {args.workers}")
        return run_all(args.profile, args.run_dir, args.data_dir, args.seeds, args.kernel, args.workers,
                       args.scope)
    if args.cmd == "train":
        return train_cmd(args.scenario, args.seed, args.profile, args.run_dir, args.data_dir)
    if args.cmd == "sweep":
        return sweep_cmd(args)
    if args.cmd == "methods":
        return methods_cmd()
    if args.cmd == "colab-cells":
        from .colab import sync_notebooks
        bad = sync_notebooks(_root() / "notebooks", write=not args.check)
        for name in bad:
            print(f"{'differs' if args.check else 'rewritten'}: {name}")
        return 1 if (args.check and bad) else 0
    if args.cmd == "repair-results":
        from .results import repair_results
        if not Path(args.file).is_file():
            ap.error(f"no results file at {args.file!r}")
        kept, moved = repair_results(args.file)
        print(f"{args.file}: kept {kept} row(s); moved {moved} bad line(s) to {args.file}.bad")
        return 0
    raise AssertionError(f"unhandled command {args.cmd!r}")


if __name__ == "__main__":
    raise SystemExit(main())
