"""One module per marketplace behind a common face."""
