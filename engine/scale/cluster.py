"""Which Dask cluster work goes to: none (this process), a local one of N worker processes,
or a running scheduler named `dask://HOST:PORT`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.policy.model import PolicySet

if TYPE_CHECKING:
    from distributed import Client

_ADDRESS = re.compile(r"dask://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})")


class ClusterError(ValueError):
    """The cluster named cannot be used."""


def scheduler_address(url: str) -> str:
    """`dask://HOST:PORT` as the scheduler's tcp address."""
    m = _ADDRESS.fullmatch(url)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ClusterError(f"--cluster must be dask://HOST:PORT, not {url!r}")
    return f"tcp://{m['host']}:{m['port']}"


@contextmanager
def open_client(workers: int | None, cluster: str | None) -> Iterator[Client | None]:
    """A client of the cluster asked for; None when the work stays in this process."""
    if workers is not None and cluster is not None:
        raise ClusterError("give --workers or --cluster, not both")
    if workers is None and cluster is None:
        yield None
        return
    # Imported here: a command that stays in one process does not pay for distributed.
    from distributed import Client, LocalCluster
    if cluster is not None:
        address = scheduler_address(cluster)
        try:
            client = Client(address, timeout="10s")
        except OSError as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {cluster}: {e}") from e
        with client:
            yield client
        return
    assert workers is not None
    if workers < 1:
        raise ClusterError(f"--workers must be at least 1, not {workers}")
    # Processes, one thread each: durable-rules' C core and the GIL make threads no faster.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local, Client(local) as client:
        yield client


def sources(ps: PolicySet) -> tuple[tuple[str, str], ...]:
    """A policy set as the (path, text) pairs a worker compiles it from: workers get the
    policies' text, not a path they may not have."""
    return tuple((p.path, p.text) for p in ps.policies)
