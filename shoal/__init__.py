"""shoal: many replicas of a large language model behind one endpoint."""
__version__ = "0.1.0"
