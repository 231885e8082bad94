"""The append-only audit store: decisions, policy activations and everything done on them."""
