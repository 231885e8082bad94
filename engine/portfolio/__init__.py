"""Portfolio construction: targets from forecasts, weight drift, trade plans and their gating."""
