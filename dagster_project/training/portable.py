"""What makes the registered model portable and its data traceable in MLflow.

* ``code_package``: the modules the pyfunc class needs (``training.models`` and what it imports
  from the project), copied into a folder that ``mlflow.pyfunc.log_model(code_paths=...)``
  stores beside the model. ``models:/flight_delay@champion`` then loads where the project is
  not installed: in a virtual environment holding only ``requirements(kind)``.
* ``requirements``: the model's own pip requirements, per model family (an XGBoost model does
  not drag in torch); ``mlflow-skinny`` is enough to load and score a pyfunc.
* ``log_datasets``: the training, validation and holdout sets as MLflow datasets
  (``mlflow.log_input``) whose digest is the frame's content hash (``tracking.frame_hash``).
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from dagster_project.features.engineering import LABEL
from dagster_project.training import tracking

PACKAGE = "dagster_project"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENTRY_MODULE = "dagster_project.training.models"

# Pinned to the versions the model was trained with (as installed here).
COMMON = ("mlflow-skinny", "pandas", "numpy", "cloudpickle")
BY_KIND = {"xgboost": ("xgboost",), "torch": ("torch",)}
DIGEST_CHARS = 32  # MLflow's dataset digest column holds 36 characters


def _project_imports(path: Path) -> set[str]:
    """The ``dagster_project.*`` modules a file imports (at any depth, lazy ones included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def _module_file(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for candidate in (
        PACKAGE_DIR / relative.with_suffix(".py"),
        PACKAGE_DIR / relative / "__init__.py",
    ):
        if candidate.is_file():
            return candidate
    return None


def module_closure(entry: str = ENTRY_MODULE) -> list[Path]:
    """The project files ``entry`` needs: itself, the project modules it imports (transitively)
    and every package ``__init__`` on their way."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        file = _module_file(todo.pop())
        if file is None or file in seen:
            continue
        seen.add(file)
        todo.extend(_project_imports(file))
        for parent in file.relative_to(PACKAGE_DIR).parents:
            init = PACKAGE_DIR / parent / "__init__.py"
            if init.is_file() and init not in seen:
                seen.add(init)
                todo.extend(_project_imports(init))
    return sorted(seen)


def code_package(folder: Path) -> Path:
    """Copy the pyfunc's module closure to ``folder/dagster_project``; returns that folder."""
    target = folder / PACKAGE
    for file in module_closure():
        dest = target / file.relative_to(PACKAGE_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, dest)
    return target


def requirements(kind: str) -> list[str]:
    """``name==version`` for what a ``kind`` model needs to load and score (local version
    labels such as ``+cpu`` dropped: the index does not serve them)."""
    if kind not in BY_KIND:
        raise ValueError(f"no requirements for model kind {kind!r} (known: {sorted(BY_KIND)})")
    return [f"{name}=={version(name).split('+')[0]}" for name in (*COMMON, *BY_KIND[kind])]


def dataset_digest(frame: pd.DataFrame) -> str:
    return tracking.frame_hash(frame)[:DIGEST_CHARS]


def log_datasets(splits: Mapping[str, pd.DataFrame], name_prefix: str) -> dict[str, str]:
    """``mlflow.log_input`` for each split (context = its name: training, validation, holdout);
    returns {context: digest}. Call inside an active run."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    digests: dict[str, str] = {}
    for context, frame in splits.items():
        digest = dataset_digest(frame)
        dataset = from_pandas(frame, targets=LABEL, name=f"{name_prefix}_{context}", digest=digest)
        mlflow.log_input(dataset, context=context, tags={"rows": str(len(frame))})
        digests[context] = digest
    return digests
