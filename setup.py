"""Package list for setuptools (everything else is in pyproject.toml).

The run configs live in the checkout's top-level ``configs/`` folder, where users look for them; a
non-editable install carries them as the package data of ``stream.configs`` (found by ``stream.config``
in either place). ``tools/`` holds developer scripts only and is not installed.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["core*", "stream*"]) + ["stream.configs"],
    package_dir={"stream.configs": "configs"},
)
