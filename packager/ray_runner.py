"""The packager's tasks on a Ray cluster (``--cluster ray://HOST:PORT`` through Ray Client, ``auto`` for the cluster
this machine belongs to, or a ``HOST:PORT`` GCS address): a :class:`packager.runner.Runner`.

Every task is a Ray task (one CPU; one GPU when the run's device is ``cuda``) running the same pure function as a
local worker would (:mod:`packager.tasks`); a Ray worker process keeps the models it loaded for the next tasks it
runs (:func:`packager.tasks._cached`), so models are loaded once per worker. The workers read the source from its
path (an absolute path every node can reach: a shared filesystem) and return their results to the driver, which
writes the stream: nothing a worker does touches the output directory. A worker that dies (killed, out of memory,
its node lost) has its task run again by Ray (``max_retries``); an error raised by a task (bad input, a bug) is
raised in the driver as itself. The cluster going away is a :class:`~bbmr_stream.errors.ClusterError`.

Ray is an optional dependency (the ``cluster`` extra): importing this module without it is a one-line error.
"""

from __future__ import annotations

import signal
import threading
import warnings

from bbmr_stream.errors import ClusterError, InputError


def _call(fn, task, shared):
    """A task on a Ray worker (``shared`` resolved from the object store by Ray)."""
    return fn(task) if shared is None else fn(task, shared)


class RayRunner:
    local_files = False  # workers may be on other machines: they get bytes, not paths into the stream

    def __init__(self, address: str, retries: int = 3) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("--cluster needs Ray: pip install 'bbmr-stream[cluster]'") from None
        self.ray, self.address, self.retries = ray, address, retries
        term = signal.getsignal(signal.SIGTERM)  # ray.init installs its own: keep the CLI's (exit 143, cleanup)
        try:
            with warnings.catch_warnings():  # Ray Client warns before it raises: the error line says it
                warnings.simplefilter("ignore")
                ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except Exception as e:  # ConnectionError, RuntimeError, grpc errors: the cluster is not there
            raise ClusterError(f"--cluster {address}: cannot connect to a Ray cluster ({_line(e)})") from None
        finally:
            if term is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, term)
        self.remote = ray.remote(max_retries=retries, retry_exceptions=False)(_call)
        try:
            self.cpus = self.workers = max(1, int(ray.cluster_resources().get("CPU", 0)))
            self.nodes = len([n for n in ray.nodes() if n.get("Alive")])
        except Exception as e:
            self.close()
            raise ClusterError(f"--cluster {address}: the cluster does not answer ({_line(e)})") from None

    def map(self, fn, tasks, shared=None, done=None) -> list | None:
        ray = self.ray
        try:
            ref = ray.put(shared) if shared is not None else None
            index = {self.remote.options(num_cpus=1, num_gpus=_gpus(t)).remote(fn, t, ref): i
                     for i, t in enumerate(tasks)}
        except Exception as e:
            raise ClusterError(f"--cluster {self.address}: {_line(e)}") from None
        results: dict[int, object] = {}
        pending = list(index)
        try:
            while pending:
                ready, pending = self._wait(pending)
                for r in ready:
                    res, i = self._get(r), index.pop(r)  # (the object store frees a result once unreferenced)
                    if done is not None:
                        done(i, res)
                    else:
                        results[i] = res
        except BaseException:
            for r in pending:
                try:
                    ray.cancel(r, force=True)
                except Exception:  # the cluster may be gone already
                    pass
            raise
        return None if done is not None else [results[i] for i in range(len(tasks))]

    def _wait(self, pending: list) -> tuple[list, list]:
        ex = self.ray.exceptions
        try:
            return self.ray.wait(pending, num_returns=1)
        except (ex.RaySystemError, ConnectionError, ex.GetTimeoutError) as e:
            raise ClusterError(f"--cluster {self.address}: the cluster went away ({_line(e)})") from None

    def _get(self, ref):
        ex = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except ex.RayTaskError as e:  # the task raised: its own exception (InputError, a bug) as itself
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except (ex.WorkerCrashedError, ex.NodeDiedError, ex.ObjectLostError, ex.OutOfMemoryError) as e:
            raise ClusterError(f"--cluster {self.address}: a task's worker died {1 + self.retries} times "
                               f"({_line(e)})") from None
        except (ex.RaySystemError, ConnectionError, ex.GetTimeoutError) as e:
            raise ClusterError(f"--cluster {self.address}: the cluster went away ({_line(e)})") from None

    def describe(self) -> dict:
        return {"runner": "ray", "workers": self.cpus, "nodes": self.nodes}

    def close(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:  # a cluster that went away cannot be left politely
            pass


def _gpus(task) -> float:
    cfg = getattr(task, "config", None)
    return 1.0 if cfg is not None and cfg.device == "cuda" else 0.0


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
