"""FuggerBot risk-policy engine: policies in, decisions out."""
