"""The array type of every plugin signature: a numpy array, its shape and dtype said in each docstring (numpy's
generic cannot say them more precisely there)."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

Array = npt.NDArray[Any]
