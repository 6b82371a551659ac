"""The ``aaedetect`` command-line interface (installed as the package ``aaedetect_cli``)."""
