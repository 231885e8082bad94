"""Monitoring: alerts, the sinks that deliver them, and a dispatcher that never blocks trading."""
