"""Policies: YAML documents loaded with positions, validated, and turned into frozen data."""
