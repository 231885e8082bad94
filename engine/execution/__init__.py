"""Order execution: the broker adapter interface and the embedded paper broker."""
