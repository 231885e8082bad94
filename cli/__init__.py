"""The `fugger` command: a thin shell over engine/."""
