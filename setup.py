"""Build the optional C extensions; metadata lives in pyproject.toml.

``cdp_ray.xdr.fast._fastxdr`` is the fast XDR codec and the ledger index of the native engine;
``cdp_ray.processors._native`` builds the core tables from a ledger's raw XDR into Arrow buffers;
``cdp_ray.processors._details`` reads what the operations table needs of a decoded operation from its
XDR; ``cdp_ray.sinks._pgcopy`` writes PostgreSQL's binary COPY format from Arrow buffers. All are
``optional``: where they cannot be compiled the install still succeeds, ``cdp_ray.xdr`` decodes with
stellar-sdk alone, the Python processors build every table and rows are copied as CSV.
"""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cdp_ray.xdr.fast._fastxdr",
            sources=["cdp_ray/xdr/fast/_fastxdr.c"],
            extra_compile_args=["-O2"],
            depends=["cdp_ray/xdr/fast/strkey.h", "cdp_ray/xdr/fast/fastxdr_api.h"],
            optional=True,
        ),
        Extension(
            "cdp_ray.processors._native",
            sources=sorted(glob("cdp_ray/processors/_native/*.c")),
            depends=["cdp_ray/processors/_native/native.h", "cdp_ray/xdr/fast/strkey.h", "cdp_ray/xdr/fast/fastxdr_api.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "cdp_ray.sinks._pgcopy",
            sources=["cdp_ray/sinks/_pgcopy.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "cdp_ray.processors._details",
            sources=["cdp_ray/processors/_details.c"],
            depends=["cdp_ray/xdr/fast/strkey.h"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
