"""Airflow integration: the only part of ``recsys`` that may import Airflow.

Plain-Python modules (``paths``, ``config``, ``tasks``, ``train_step``, ``model_gate``,
``compaction``, ``deploy``, ``aks``) hold the logic and never import Airflow, so they are
tested and reused without it; ``cli_runner`` runs a step's command line (its
``gate_is_final`` imports Airflow's exceptions only when a gate fails inside a task);
``azureml``, ``triggers``, ``operators``, ``sensors`` and ``aks_clients`` are the Airflow
hooks, triggers, operators and connections built on them.
"""
