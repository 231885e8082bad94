"""Rule evaluation. Only engine.rules.durable_backend touches durable-rules."""
