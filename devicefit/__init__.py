"""devicefit: find the compressed Keras models that run best on a real device."""

__version__ = "0.1.0"
