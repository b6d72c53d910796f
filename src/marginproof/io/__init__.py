"""Files at the boundary: portfolio and market JSON formats (``formats``) and typed readers of
the shipped market data (``datasets``)."""
