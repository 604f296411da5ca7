"""Airflow integration: the only part of ``recsys`` that may import Airflow.

Plain-Python modules (``paths``, ``config``, ``tasks``, ``compaction``,
``deploy``) hold the logic and never import Airflow, so they are tested and
reused without it; ``azureml``, ``triggers``, ``operators`` and ``sensors``
are the Airflow hooks, triggers and operators built on them.
"""
