"""The project's repository URL, in one place, and the Colab cells generated from it.

Every notebook opens with an "Open in Colab" badge and a set-up cell that installs unlearnlib in
Colab. Both point at the same pinned revision, the tag of this package's version (``v0.1.0``),
never a moving branch: the notebook a reader opens and the library it installs are the same
release. :func:`sync_notebooks` rewrites the badge and the install line of every notebook pair
(``.py`` and ``.ipynb``) from :data:`REPOSITORY` and :func:`revision`; ``python -m unlearnlib
colab-cells --check`` (run by the tests) fails when a notebook disagrees, and without
``--check`` it fixes them. Releasing means: bump the version, run the command, tag ``v<version>``.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import __version__

__all__ = ["REPOSITORY", "revision", "badge", "install_spec", "sync_notebooks"]

REPOSITORY = "https://github.com/unlearnlib/unlearnlib"
_SLUG = REPOSITORY.removeprefix("https://github.com/")

_BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)")
_INSTALL = re.compile(r'"unlearnlib\[notebooks\] @ git\+[^"]*"')


def revision() -> str:
    """The git revision the notebooks open and install: the tag of this package's version."""
    return f"v{__version__}"


def badge(notebook: str) -> str:
    """The Markdown "Open in Colab" badge of ``notebook`` (file name, e.g. ``01_train_original.ipynb``)."""
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{_SLUG}/blob/{revision()}/notebooks/{notebook})")


def install_spec(extras: str = "notebooks") -> str:
    """The pip requirement the set-up cell installs: ``unlearnlib[extras] @ git+URL@revision``."""
    return f"unlearnlib[{extras}] @ git+{REPOSITORY}@{revision()}"


def _fixed(text: str, notebook: str) -> str:
    text = _BADGE.sub(lambda _: badge(notebook), text)
    return _INSTALL.sub(lambda _: f'"{install_spec()}"', text)


def sync_notebooks(folder, write: bool = False) -> list[str]:
    """The notebook files under ``folder`` (``NN_*.py`` and ``.ipynb``) whose badge or install line
    differs from the generated one; with ``write``, those files are rewritten. A file with no
    badge or no install line at all is reported too (and not written)."""
    import nbformat
    bad = []
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.*")):
        if path.suffix not in (".py", ".ipynb"):
            continue
        name = path.with_suffix(".ipynb").name
        text = path.read_text()
        if not (_BADGE.search(text) and _INSTALL.search(text)):
            bad.append(f"{path.name} (no Colab badge or install line)")
            continue
        if path.suffix == ".py":
            new = _fixed(text, name)
            if new != text:
                bad.append(path.name)
                if write:
                    path.write_text(new)
            continue
        nb = nbformat.read(path, as_version=4)
        changed = False
        for cell in nb.cells:
            new = _fixed(cell.source, name)
            if new != cell.source:
                cell.source, changed = new, True
        if changed:
            bad.append(path.name)
            if write:
                nbformat.write(nb, path)
    return bad
