"""`fugger serve`: the decision API in one long-running process. The only package that imports
the web framework."""
