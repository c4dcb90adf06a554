"""The package's version, written here and nowhere else: ``pyproject.toml`` reads it at build time
(``[tool.setuptools.dynamic]``), ``resdense.__version__``, ``resdense --version`` and the HTTP service's
OpenAPI document import it. A ground module, so any layer may ask without climbing up to the package."""

__version__ = "0.1.0"
