"""nasname engine: the pure matching library (no gRPC here).

Sub-modules are imported where they are used; importing ``engine`` itself stays cheap.
"""

__version__ = "0.1.0"
