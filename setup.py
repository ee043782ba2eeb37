"""Build the optional C extension of the fast XDR codec; metadata lives in pyproject.toml.

The extension is ``optional``: where it cannot be compiled the install still succeeds and
``cdp_ray.xdr`` decodes with stellar-sdk alone.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cdp_ray.xdr.fast._fastxdr",
            sources=["cdp_ray/xdr/fast/_fastxdr.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
