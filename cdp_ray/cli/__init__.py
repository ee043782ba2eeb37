"""The ``cdp-ray`` command line."""
