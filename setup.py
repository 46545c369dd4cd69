"""Build hook: the package mapping and the optional C scanner; the rest is in pyproject.toml.

The repository's top-level folders `parsers/` and `pipeline/` (a fixed layout) install as
`mtalens.parsers` and `mtalens.pipeline`: every folder below them becomes a (sub)package,
its data files included, so a new one cannot be forgotten in the wheel."""

from setuptools import Extension, find_namespace_packages, setup

TOP = ("parsers", "pipeline")
# data folders (pipeline/sql, rules, queries, templates) are packages too, holding only data
packages = [
    f"mtalens.{p}"
    for p in find_namespace_packages(include=[f"{t}*" for t in TOP], exclude=["*__pycache__*"])
]

setup(
    packages=packages,
    package_dir={f"mtalens.{t}": t for t in TOP},
    # migrations, named queries, classification rules, the HTML template, the scanner's source
    package_data={"": ["*.sql", "*.toml", "*.html", "*.c"]},
    ext_modules=[
        Extension(
            "mtalens.parsers._pfscan",
            ["parsers/_pfscan.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,  # without a compiler mtalens still works on the pure-Python path
        )
    ],
)
