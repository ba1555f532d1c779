"""The lowest stage: the one error type, the parameter schema, the one part record and registry type.

Every other stage imports these; they import nothing of netgraph.
"""

__version__ = "0.1.0"  # setup.cfg reads it (version = attr:)
