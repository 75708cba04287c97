"""Real programs a user would write, run on every backend and compared with a serial run."""
