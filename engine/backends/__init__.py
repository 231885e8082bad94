"""Evaluation backends beside durable-rules (the engine of record), and their agreement check."""
