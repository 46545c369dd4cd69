"""Build hook for the optional C scanner; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "parsers._pfscan",
            ["parsers/_pfscan.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,  # without a compiler mtalens still works on the pure-Python path
        )
    ]
)
