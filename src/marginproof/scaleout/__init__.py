"""Scale-out of batch re-margin over a Dask cluster (local here, the same code on a real one)."""
