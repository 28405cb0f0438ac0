"""recurlab: efficient gated recurrent and recursive neural units for PyTorch.

The package is layered (see docs/design.md): ``recurlab.ops`` holds the pure
tensor functions (scans, convolutions, attention) with several backends each.
"""

__version__ = "0.1.0"
