"""Packaging for nova-autopilot.

The importable package lives in ``operator/nova_autopilot``. ``operator/`` is a
source root, not a package, so it can never shadow the standard library's
``operator`` module.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="nova-autopilot",
    version="0.1.0",
    description="Event-driven automation daemon for OpenStack Nova: confirmed resizes and rescues",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "operator"},
    packages=find_packages(where="operator"),
    package_data={
        "nova_autopilot": [
            "py.typed",
            "demo/seed/*.yaml",
            "demo/seed/*.jsonl",
            "journal/migrations/script.py.mako",
            "policies/event_types.yaml",
            "settings/foreign_options.yaml",
        ]
    },
    install_requires=[
        "oslo.config>=9.4,<11",
        "oslo.messaging>=14.7,<19",
        "openstacksdk>=3.0,<5",
        "kombu>=5.3,<6",
        "structlog>=24.1,<27",
        "PyYAML>=6.0,<7",
        "SQLAlchemy>=2.0,<2.2",
        "alembic>=1.13,<2",
        "prometheus_client>=0.20,<1",
        "tooz>=9.0,<10",
        "cliff>=4.0,<5",
        "orjson>=3.9,<4",
    ],
    extras_require={
        "mysql": ["PyMySQL>=1.1,<2"],
        "postgresql": ["psycopg[binary]>=3.1,<4"],
        "redis": ["redis>=5,<9"],
        "etcd": ["etcd3gw>=2.3,<3"],
        "zookeeper": ["kazoo>=2.6,<3"],
        "docs": ["mkdocs>=1.6,<2"],
        "test": [
            "PyMySQL>=1.1,<2",
            "psycopg[binary]>=3.1,<4",
            "redis>=5,<9",
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "hypothesis>=6.100,<7",
            "atheris>=3.0,<4",
            "ruff>=0.6,<1",
            "import-linter>=2.1,<3",
            "mypy>=1.10,<3",
            "types-PyYAML",
        ],
    },
    entry_points={
        "console_scripts": ["nova-autopilot = nova_autopilot.cli:main"],
        "oslo.config.opts": ["nova-autopilot = nova_autopilot.settings:list_opts"],
    },
    classifiers=[
        "Environment :: OpenStack",
        "Intended Audience :: System Administrators",
        "Programming Language :: Python :: 3",
    ],
)
