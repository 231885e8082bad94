"""Work spread over a Dask cluster: decisions partitioned by symbol, replays by policy set."""
