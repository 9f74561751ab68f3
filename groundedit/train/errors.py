"""Expected failures of training, importable without loading torch (the CLI shows them as one line)."""


class DataError(ValueError):
    """``--data`` cannot be trained on (missing, empty, unreadable, or nothing usable in it)."""


class TrainError(RuntimeError):
    """A run that cannot start or continue as asked."""
