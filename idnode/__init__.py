"""idnode: an industrial internet identifier resolution secondary node."""

__version__ = "0.1.0"
