"""What the routes are given (FastAPI dependencies): the server's parts, made once by create_app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import BaseModel

from mlops.config import Config
from mlops.serve.inference_log import InferenceLog
from mlops.serve.metrics import Metrics
from mlops.serve.model import Batcher, ModelSlot


@dataclass(frozen=True)
class Serving:
    """One server's model slot, batcher, monitoring and request model."""

    config: Config
    slot: ModelSlot
    batcher: Batcher
    monitor: Metrics
    inference: InferenceLog | None
    payload_model: type[BaseModel]  # /predict's body, generated from the schema
    row_values: Callable[[Any], tuple]  # a validated row's feature values, in features order

    def answered(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        probability: np.ndarray,
        proba: np.ndarray,
        version: str,
        request_id: str,
    ) -> None:
        """One scored request (every scoring route): counted, and logged when the log is on."""
        self.monitor.scored(labels)
        if self.inference is not None:
            current = self.slot.current
            classes = current.classes if current is not None else ()
            self.inference.record(x, labels, probability, proba, classes, version, request_id)


async def serving(request: Request) -> Serving:
    """The app's Serving. Async on purpose: FastAPI runs a sync dependency on a worker thread,
    a hop per request."""
    found: Serving = request.app.state.serving
    return found
