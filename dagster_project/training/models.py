"""The two model families, behind one interface, and their MLflow ``pyfunc`` packaging.

Both take the raw feature frame (see :mod:`preprocess`) and return the probability that the
flight departs more than 15 minutes late. A saved model is a folder holding ``meta.json``, the
fitted ``preprocessor.json`` and the weights, so serving applies exactly the training transform.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from dagster_project.features.engineering import LABEL
from dagster_project.training.preprocess import (
    CATEGORICAL,
    NUMERIC,
    Inputs,
    Preprocessor,
    n_rows,
)

KINDS = ("xgboost", "torch")
SMALL_BATCH = 4096  # rows below which prediction runs single-threaded
PREDICT_CHUNK = 65536  # rows per forward pass of the network
Progress = Callable[[str], None]


class DelayModel(Protocol):
    kind: str
    preprocessor: Preprocessor
    params: dict[str, Any]

    def predict_proba(self, df: Inputs) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


def _write_common(model: DelayModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor.json").write_text(model.preprocessor.to_json())
    (folder / "meta.json").write_text(json.dumps({"kind": model.kind, "params": model.params}))


# --------------------------------------------------------------------------- XGBoost
@dataclass
class XGBoostModel:
    preprocessor: Preprocessor
    booster: Any
    params: dict[str, Any]
    kind: str = "xgboost"

    def __post_init__(self) -> None:
        # Two configured copies, never reconfigured afterwards: changing a booster's nthread
        # while another thread predicts with it fails ("need_configuration_"), which the
        # endpoint's concurrent requests hit. Threads cost more than they give on a
        # request-sized batch (40 ms vs 0.3 ms per row), so small batches use a 1-thread copy.
        self.booster.set_param({"nthread": 0})
        self._single = self.booster.copy()
        self._single.set_param({"nthread": 1})

    def predict_proba(self, df: Inputs) -> np.ndarray:
        booster = self._single if n_rows(df) < SMALL_BATCH else self.booster
        # inplace_predict: no DMatrix to build, and thread-safe on a configured booster.
        out = booster.inplace_predict(self.preprocessor.tree_matrix(df))
        return np.asarray(out, dtype="float64")

    def save(self, folder: Path) -> None:
        _write_common(self, folder)
        self.booster.save_model(str(folder / "model.ubj"))


def fit_xgboost(
    train: pd.DataFrame,
    val: pd.DataFrame,
    params: dict[str, Any],
    progress: Progress | None = None,
    numeric: Sequence[str] = NUMERIC,
) -> XGBoostModel:
    import xgboost as xgb

    pre = Preprocessor.fit(train, numeric)
    dtrain = xgb.DMatrix(pre.tree_matrix(train), label=train[LABEL].to_numpy())
    dval = xgb.DMatrix(pre.tree_matrix(val), label=val[LABEL].to_numpy())
    booster_params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "nthread": 0,
        "seed": 13,
        **{k: v for k, v in params.items() if k != "num_boost_round"},
    }
    booster = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=int(params.get("num_boost_round", 400)),
        evals=[(dval, "validation")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    best = int(booster.best_iteration) + 1
    booster = booster[:best]  # keep the trees up to the best validation round
    if progress:
        progress(f"xgboost: {best} trees")
    return XGBoostModel(pre, booster, {**params, "best_num_boost_round": best})


def _load_xgboost(folder: Path, pre: Preprocessor, params: dict[str, Any]) -> XGBoostModel:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(folder / "model.ubj"))
    return XGBoostModel(pre, booster, params)


# --------------------------------------------------------------------------- PyTorch
def _embedding_dim(cardinality: int) -> int:
    return int(min(16, max(2, math.ceil(cardinality**0.5))))


def build_net(cardinalities: list[int], n_numeric: int, hidden: int, layers: int, dropout: float):
    """MLP over [embeddings of the categorical keys, standardised numbers]."""
    import torch
    from torch import nn

    class TabularMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(c, _embedding_dim(c)) for c in cardinalities
            )
            width = sum(_embedding_dim(c) for c in cardinalities) + n_numeric
            blocks: list[nn.Module] = []
            for _ in range(layers):
                blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
                width = hidden
            blocks.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*blocks)

        def forward(self, codes: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
            embedded = [emb(codes[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.mlp(torch.cat([*embedded, numbers], dim=1)).squeeze(1)

    return TabularMLP()


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TorchModel:
    preprocessor: Preprocessor
    net: Any
    params: dict[str, Any]
    kind: str = "torch"

    def _tensors(self, df: Inputs, device: str) -> tuple[Any, Any]:
        import torch

        codes = torch.as_tensor(self.preprocessor.codes(df), device=device)
        numbers = torch.as_tensor(self.preprocessor.numbers(df, scale=True), device=device)
        return codes, numbers

    def predict_proba(self, df: Inputs) -> np.ndarray:
        """Probabilities for a frame, or for a request's columns (a mapping of column to
        values, what the endpoint passes): those go to the preprocessor as they are, without a
        per-request DataFrame (8 ms of a single-row request's 9, measured)."""
        import torch

        device = next(self.net.parameters()).device.type
        if self.net.training:  # (eval() walks every module: not on each request)
            self.net.eval()
        n = n_rows(df)
        if n == 0:
            return np.zeros(0)
        chunks = (
            [df.iloc[start : start + PREDICT_CHUNK] for start in range(0, n, PREDICT_CHUNK)]
            if isinstance(df, pd.DataFrame)
            else [df]  # a request: small by the endpoint's body limit
        )
        out = []
        with torch.inference_mode():
            for chunk in chunks:
                codes, numbers = self._tensors(chunk, device)
                out.append(torch.sigmoid(self.net(codes, numbers)).cpu().numpy())
        return np.concatenate(out).astype("float64")

    def save(self, folder: Path) -> None:
        import torch

        _write_common(self, folder)
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save(state, folder / "weights.pt")


def _torch_arch(pre: Preprocessor, params: dict[str, Any]) -> Any:
    return build_net(
        [pre.cardinalities()[c] for c in CATEGORICAL],
        len(pre.numeric),
        int(params["hidden"]),
        int(params["layers"]),
        float(params["dropout"]),
    )


def fit_torch(
    train: pd.DataFrame,
    val: pd.DataFrame,
    params: dict[str, Any],
    progress: Progress | None = None,
    numeric: Sequence[str] = NUMERIC,
) -> TorchModel:
    """Adam on binary cross-entropy, early stopping on validation log loss (best epoch kept)."""
    import torch

    torch.manual_seed(13)
    device = torch_device()
    pre = Preprocessor.fit(train, numeric)
    net = _torch_arch(pre, params).to(device)
    model = TorchModel(pre, net, dict(params))
    codes, numbers = model._tensors(train, device)
    labels = torch.as_tensor(train[LABEL].to_numpy(dtype="float32"), device=device)
    val_codes, val_numbers = model._tensors(val, device)
    val_labels = torch.as_tensor(val[LABEL].to_numpy(dtype="float32"), device=device)
    optimiser = torch.optim.Adam(
        net.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = int(params.get("batch_size", 1024))
    best_loss, best_state, best_epoch, patience = float("inf"), None, 0, 2
    for epoch in range(int(params.get("max_epochs", 8))):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(labels), device=device)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            optimiser.zero_grad()
            loss = loss_fn(net(codes[idx], numbers[idx]), labels[idx])
            loss.backward()
            optimiser.step()
        net.eval()
        with torch.inference_mode():
            val_loss = float(loss_fn(net(val_codes, val_numbers), val_labels))
        if progress:
            progress(
                f"torch epoch {epoch + 1}: validation log loss {val_loss:.4f} "
                f"({time.perf_counter() - started:.1f}s, {device})"
            )
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch = val_loss, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch + 1 - best_epoch >= patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.to("cpu")  # saved and served on the CPU
    model.params["best_epoch"] = best_epoch
    return model


def _load_torch(folder: Path, pre: Preprocessor, params: dict[str, Any]) -> TorchModel:
    import torch

    net = _torch_arch(pre, params)
    net.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    net.eval()
    return TorchModel(pre, net, params)


FITTERS: dict[str, Callable[..., DelayModel]] = {"xgboost": fit_xgboost, "torch": fit_torch}


def load(folder: Path) -> DelayModel:
    meta = json.loads((folder / "meta.json").read_text())
    pre = Preprocessor.from_json((folder / "preprocessor.json").read_text())
    loaders: dict[str, Callable[[Path, Preprocessor, dict[str, Any]], DelayModel]] = {
        "xgboost": _load_xgboost,
        "torch": _load_torch,
    }
    if meta["kind"] not in loaders:
        raise ValueError(f"unknown model kind {meta['kind']!r} in {folder}")
    return loaders[meta["kind"]](folder, pre, meta["params"])


class FlightDelayPyfunc(PythonModel):
    """What MLflow stores and serving loads: preprocessing + either model family."""

    def load_context(self, context: Any) -> None:
        self.model = load(Path(context.artifacts["model_dir"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict_proba(model_input)
