"""Example fact streams, a starting portfolio and the builder of facts from market history."""
