"""The one exception the data pipeline raises for problems in a user's dataset."""


class DatasetError(ValueError):
    """A dataset problem the user has to fix: bad annotation json, missing image, wrong image size.

    The message names the file, the field and the index or id, and says what to do, e.g.::

        train.json: annotations[12] (id 57).bbox: expected 4 finite numbers [x, y, width, height],
        got [10, 20, nan, 5]. Fix or remove this annotation.

    When a check finds several problems at once, ``errors`` holds every message (``str(err)`` shows
    the first and how many more there are); otherwise ``errors`` is ``[message]``.
    """

    def __init__(self, message: str, errors: list[str] | None = None):
        self.errors = list(errors) if errors else [message]
        super().__init__(message)

    @classmethod
    def from_errors(cls, errors: list[str]) -> "DatasetError":
        """One exception for a list of messages: the first in full, then the count of the rest."""
        message = errors[0]
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error(s); scripts/check_dataset.py lists them all)"
        return cls(message, errors)
