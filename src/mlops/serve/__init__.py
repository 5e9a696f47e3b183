"""`make serve`: the production model behind a strict, fast HTTP API (FastAPI + uvicorn).

schema: the request model generated from params.yaml; model: verified loading, reloads and
batching; logs: JSON log lines and the access log; metrics: GET /metrics (Prometheus);
inference_log: every scored row as Parquet; deps: what the routes are given; routes: /health,
/ready, /metadata, /metrics and /predict; oip: the Open Inference Protocol (V2) routes; app: the
set-up, lifespan and server.
"""

from mlops.serve.app import create_app, make_server, serve_command
from mlops.serve.logs import JsonFormatter, log_config
from mlops.serve.schema import MAX_ERRORS, error_items, example_instance

__all__ = [
    "MAX_ERRORS",
    "JsonFormatter",
    "create_app",
    "error_items",
    "example_instance",
    "log_config",
    "make_server",
    "serve_command",
]
