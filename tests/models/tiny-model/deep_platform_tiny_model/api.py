"""DEEPaaS V2 model API of the tiny test model (entry point ``tinymodel``).

Environment variables (all optional):

``TINYMODEL_LOAD_SECONDS``   sleep this long when this module is imported
                             (simulates a slow model load / cold start).
``TINYMODEL_WARM_SECONDS``   sleep this long in ``warm()``.
``TINYMODEL_EPOCH_SECONDS``  sleep this long per epoch in ``train()``.
``TINYMODEL_REPORT``         ``push`` (default): report each epoch through
                             ``deep_platform.progress.client.report`` when that
                             package is importable and ``DEEP_PROGRESS_URL`` is
                             set; ``print``: only print the lines.

``train()`` prints Keras-style ``Epoch 3/15`` when an epoch starts and
``epoch=3 loss=0.125`` when it ends (what the stdout collector reads).
``TINYMODEL_OUTPUT_DIR``     where ``train()`` writes ``train-args.json``,
                             ``checkpoint.txt`` and ``model.txt``
                             (default: ``./models``).
``TINYMODEL_FAIL``           if set (non-empty), ``train()`` raises after
                             writing a partial artifact.
``TINYMODEL_STATE_DIR``      where the warm marker is written (default: the
                             system temp dir).
``TINYMODEL_TERMINATION_LOG`` file that receives the failure message when
                             ``train()`` fails (default: ``/dev/termination-log``
                             if it exists, as in a Kubernetes container).

Note: ``deepaas-run`` executes ``warm``/``predict``/``train`` in a *spawned*
worker process, while ``get_metadata`` runs in the server process. A module
flag set by ``warm()`` is therefore invisible to ``get_metadata`` there, so
``warm()`` also drops a marker file keyed by the server's PID (the worker's
parent) which ``get_metadata`` checks.
"""

import contextlib
import hashlib
import json
import multiprocessing
import os
import tempfile
import time

from webargs import fields

from deep_platform_tiny_model import __version__

NAME = "tinymodel"

_LOAD_STARTED = time.time()
_LOAD_SECONDS = float(os.environ.get("TINYMODEL_LOAD_SECONDS", "0") or 0)
if _LOAD_SECONDS > 0:
    time.sleep(_LOAD_SECONDS)
LOADED_AT = time.time()

WARMED = False
WARM_COUNT = 0


def _state_dir():
    return os.environ.get("TINYMODEL_STATE_DIR") or tempfile.gettempdir()


def _warm_marker(server_pid):
    return os.path.join(_state_dir(), f"tinymodel-warmed-{server_pid}")


def _clear_stale_marker():
    # A server process starts un-warmed: drop a marker left by a dead process
    # that had the same PID.
    if multiprocessing.parent_process() is None:
        with contextlib.suppress(OSError):
            os.unlink(_warm_marker(os.getpid()))


_clear_stale_marker()


def _output_dir():
    d = os.environ.get("TINYMODEL_OUTPUT_DIR") or os.path.join(os.getcwd(), "models")
    os.makedirs(d, exist_ok=True)
    return d


def _is_warmed():
    # In-process flag (deepaas-cli warm, direct calls), or a marker written by
    # a deepaas-run pool worker whose parent is this process.
    return WARMED or os.path.exists(_warm_marker(os.getpid()))


def get_metadata():
    return {
        "name": NAME,
        "version": __version__,
        "author": "deep-platform developers",
        "description": (
            "Tiny dependency-free DEEPaaS model for deep-platform tests: "
            "echoes train args with their types, hashes uploads."
        ),
        "license": "Apache-2.0",
        "warmed": _is_warmed(),
        "load_seconds": _LOAD_SECONDS,
        "pid": os.getpid(),
    }


def warm():
    global WARMED, WARM_COUNT
    seconds = float(os.environ.get("TINYMODEL_WARM_SECONDS", "0") or 0)
    if seconds > 0:
        time.sleep(seconds)
    WARMED = True
    WARM_COUNT += 1
    # deepaas-run: we run in a spawned pool worker; the server is our parent.
    parent = multiprocessing.parent_process()
    if parent is not None:
        try:
            with open(_warm_marker(parent.pid), "w") as f:
                json.dump({"worker_pid": os.getpid(), "time": time.time()}, f)
        except OSError:
            pass


def get_train_args():
    return {
        "epochs": fields.Integer(
            required=False,
            load_default=1,
            metadata={"description": "Number of epochs."},
        ),
        "learning_rate": fields.Float(
            required=False,
            load_default=0.01,
            metadata={"description": "Learning rate."},
        ),
        "batch_size": fields.Integer(
            required=False,
            load_default=8,
            metadata={"description": "Batch size."},
        ),
        "model_name": fields.String(
            required=False,
            load_default="tiny",
            metadata={"description": "Name given to the trained model."},
        ),
        "augment": fields.Boolean(
            required=False,
            load_default=False,
            metadata={"description": "Use data augmentation."},
        ),
        "layers": fields.List(
            fields.Integer(),
            required=False,
            load_default=[4, 2],
            metadata={"description": "Hidden layer sizes."},
        ),
    }


def _termination_log(message):
    path = os.environ.get("TINYMODEL_TERMINATION_LOG")
    if not path and os.path.exists("/dev/termination-log"):
        path = "/dev/termination-log"
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(message)
    except OSError:
        pass


def _reporter():
    """The platform's report function, when installed and asked for (else None)."""
    if os.environ.get("TINYMODEL_REPORT", "push") != "push":
        return None
    try:
        from deep_platform.progress.client import configured, report
    except ImportError:
        return None
    return report if configured() else None


def train(**kwargs):
    out = _output_dir()
    received = {k: {"value": v, "type": type(v).__name__} for k, v in sorted(kwargs.items())}
    with open(os.path.join(out, "train-args.json"), "w") as f:
        json.dump(received, f, indent=2, sort_keys=True, default=str)

    epochs = kwargs.get("epochs") or 1
    epoch_seconds = float(os.environ.get("TINYMODEL_EPOCH_SECONDS", "0") or 0)
    loss = 1.0
    report = _reporter()
    for epoch in range(1, int(epochs) + 1):
        print(f"Epoch {epoch}/{int(epochs)}", flush=True)
        if epoch_seconds > 0:
            time.sleep(epoch_seconds)
        loss = loss / 2
        print(f"epoch={epoch} loss={loss}", flush=True)
        if report is not None:
            report(epoch=epoch, total_epochs=int(epochs), loss=loss)
        with open(os.path.join(out, "checkpoint.txt"), "w") as f:
            f.write(f"epoch={epoch} loss={loss}\n")
        if os.environ.get("TINYMODEL_FAIL"):
            message = (
                "tinymodel: simulated training failure (TINYMODEL_FAIL is set) "
                f"in epoch {epoch}; partial artifact written to "
                + os.path.join(out, "checkpoint.txt")
            )
            _termination_log(message)
            raise RuntimeError(message)

    with open(os.path.join(out, "model.txt"), "w") as f:
        f.write(
            f"tinymodel {__version__}\n"
            f"args={json.dumps(kwargs, sort_keys=True, default=str)}\n"
            f"final_loss={loss}\n"
        )
    return {
        "status": "trained",
        "epochs": epochs,
        "final_loss": loss,
        "output_dir": out,
        "artifacts": ["train-args.json", "checkpoint.txt", "model.txt"],
        "arg_types": {k: v["type"] for k, v in received.items()},
    }


def get_predict_args():
    return {
        # Must be exactly fields.Field (not fields.Raw, despite marshmallow's
        # ChangedInMarshmallow4Warning): deepaas-cli only treats
        # `type(f) is fields.Field` with metadata type=file as a file argument.
        "data": fields.Field(
            required=False,
            load_default=None,
            metadata={
                "type": "file",
                "location": "form",
                "description": "File to hash (byte length and sha256 returned).",
            },
        ),
        "text": fields.String(
            required=False,
            load_default=None,
            metadata={"description": "Text echoed back."},
        ),
    }


def predict(**kwargs):
    result = {"text": kwargs.get("text"), "warmed": WARMED, "pid": os.getpid()}
    data = kwargs.get("data")
    if data is not None:
        h = hashlib.sha256()
        n = 0
        with open(data.filename, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                n += len(chunk)
                h.update(chunk)
        result.update(
            {
                "bytes": n,
                "sha256": h.hexdigest(),
                "filename": data.original_filename,
                "content_type": data.content_type,
            }
        )
        # deepaas copies uploads to temp files and leaves cleanup to the model.
        with contextlib.suppress(OSError):
            os.unlink(data.filename)
    return result
