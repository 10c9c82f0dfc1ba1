"""The ``he`` protocol package: its public face; the parts live in private modules beside it."""

from ._protocol import *  # noqa: F403
from ._protocol import __all__ as __all__
