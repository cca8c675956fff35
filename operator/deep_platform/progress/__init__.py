"""Training progress: what a training reports (epochs, metrics), how it reaches the status.

- `report.py`: one report, checked (pure); `parse.py`: reports from printed lines (pure).
- `tracker.py`: the operator's memory of each TrainingJob's reports, its status.progress and
  bounded history, and the Prometheus series.
- `auth.py`: who may report (TokenReview, then the pod must belong to the TrainingJob).
- `receiver.py`: the HTTP endpoint in the operator process, and the coalesced writes.
- `client.py`, `callbacks.py`, `cli.py`: what runs in the training pod.
- `chart.py`: the dashboard's SVG chart of the history (pure).
"""

#: audience of the projected ServiceAccount token of a training pod; such a token is good for
#: the progress endpoint only (the API server refuses tokens not meant for it)
AUDIENCE = "deep-platform-progress"
#: environment of the training container (and of the collector sidecar)
URL_ENV = "DEEP_PROGRESS_URL"
TOKEN_FILE_ENV = "DEEP_PROGRESS_TOKEN_FILE"  # noqa: S105 (a variable's name)
TOKEN_DIR = "/var/run/secrets/deep-platform/progress"  # noqa: S105 (a path)
TOKEN_FILE = f"{TOKEN_DIR}/token"
