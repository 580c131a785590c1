"""The model layer's one error type."""

from ..errors import ESGError


class ModelError(ESGError, ValueError):
    """A workflow, profile or plan that breaks the contract of SPEC §1–§4.

    The message is one line a user can act on; loaders prefix it with the
    file it came from.
    """
