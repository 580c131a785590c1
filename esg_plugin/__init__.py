"""ESG: pipeline-conscious scheduling of DNN workflows on serverless platforms
with shareable GPUs.

Layers (enforced by import-linter, see ``pyproject.toml``):

- ``esg_plugin.model``   pure data: workflows, profiles, configurations, plans;
- ``esg_plugin.planner`` pure functions: (workflow, profiles, rate) -> Plan;
- ``esg_plugin.loaders`` reads files into model values (the only file I/O);
- ``esg_plugin.cli``     the ``esg`` command.
"""

__version__ = "0.1.0"
