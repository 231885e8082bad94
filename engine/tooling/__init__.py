"""Tools for people who write policies: test cases, lint, semantic diff."""
