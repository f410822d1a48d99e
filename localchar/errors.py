class LocalcharError(Exception):
    """A problem with the user's input: reported as one line (file and field named), exit code 2."""
