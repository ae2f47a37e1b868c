"""The first seconds: what the command and the library import before doing anything.

``rnnkit --help`` is answered from :mod:`rnnkit.tasks.catalog` without torch;
``import rnnkit.nn`` loads torch and rnnkit's layers but no training stack. Each check
runs in a fresh interpreter, so what earlier tests imported does not hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "pytorch_lightning", "torchmetrics", "matplotlib", "pandas",
         "scipy", "statsmodels")
TRAINING = ("lightning", "pytorch_lightning", "torchmetrics", "matplotlib", "pandas", "scipy",
            "statsmodels", "torch._dynamo", "rnnkit.training", "rnnkit.tasks", "rnnkit.forecasting")


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_import_rnnkit_nn_pulls_in_no_training_stack():
    modules = _modules_after("import rnnkit.nn\nrnnkit.nn.LSTM(2, 3)")
    assert "torch" in modules and "rnnkit.nn.rnn" in modules
    assert _loaded(modules, TRAINING) == []


def test_import_rnnkit_alone_loads_nothing_heavy():
    modules = _modules_after("import rnnkit\nassert rnnkit.__version__")
    assert _loaded(modules, HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "seqclass", "--help"],
                                  ["train", "translate", "--help"], ["serve", "--help"],
                                  ["lab", "compare", "--help"], ["--version"]])
def test_help_is_answered_without_torch(argv):
    code = ("from rnnkit.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code")
    modules = _modules_after(code)
    assert _loaded(modules, HEAVY) == []


def test_every_task_is_in_the_catalog_and_the_catalog_is_what_the_task_offers():
    """The parser is built from the catalog; the task that runs must see the same options."""
    from rnnkit.tasks import TASKS
    from rnnkit.tasks.catalog import CATALOG

    assert list(TASKS) == list(CATALOG)
    for name, spec in CATALOG.items():
        task = TASKS[name]
        assert isinstance(task, spec) and task.name == name
        assert task.options is spec.options and task.defaults is spec.defaults
    with pytest.raises(KeyError):
        TASKS["nonesuch"]


def test_cell_names_offered_are_the_cells_registered():
    """--cell is offered without importing torch; in a fresh process the torch-free list
    must be exactly the registry of cell descriptions, and each name builds its layer."""
    code = ("from rnnkit.choices import CELL_CHOICES; names = list(CELL_CHOICES); "
            "from rnnkit.functional import CELLS; from rnnkit.nn import layer_class; "
            "assert names == list(CELLS), (names, list(CELLS)); "
            "print(sorted({layer_class(c)(3, 4).mode == c for c in CELLS}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True]"


def test_the_engine_choice_is_marked_constant_as_torch_compile_expects():
    """rnnkit marks its engine choice by hand to keep torch._dynamo out of ``import
    rnnkit.nn``; this fails if torch ever marks constant results differently."""
    import torch._dynamo

    from rnnkit.backends.base import _selected_name

    def probe():
        return 1

    marked = torch._dynamo.assume_constant_result(probe)
    new = {k: v for k, v in vars(marked).items()}
    assert new == {"_dynamo_marked_constant": True}
    assert _selected_name._dynamo_marked_constant is True


def test_version_names_rnnkit_and_torch(capsys):
    from importlib import metadata

    import rnnkit
    from rnnkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"rnnkit {rnnkit.__version__} (torch {metadata.version('torch')}")


def test_the_all_extra_holds_every_other_extra():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    everything = set(extras["all"])
    for name, requirements in extras.items():
        if name not in ("all", "test"):
            assert set(requirements) <= everything, name
