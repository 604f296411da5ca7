# syntax=docker/dockerfile:1.7
# Airflow image for AKS: the official apache/airflow image (same version as the constraints pin)
# plus the recsys library, its airflow + azure extras, and the DAGs, plugins and Helm chart baked in.
# The official Helm chart (helm/airflow/values-aks.yaml) runs every component and, with the
# KubernetesExecutor, every task pod from this one image.
#
#   docker build -f docker/airflow.Dockerfile -t recsys-airflow:0.1.0 .
#
# Extras: `airflow,azure` drive Azure ML and the lake; `validate` is the great-expectations gate
# and `train` (CPU torch) the evaluation and ONNX export that run inside task pods. GPU training
# itself runs on Azure ML in the training image. Slimmer image: --build-arg EXTRAS=airflow,azure

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

FROM ${AIRFLOW_IMAGE}
ARG EXTRAS=airflow,azure,validate,train
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECSYS_HELM_CHART=/opt/airflow/helm/recsys-serving \
    RECSYS_HELM_VALUES=/opt/airflow/helm/values-production.yaml
# The official image's airflow user (uid 50000, gid 0) installs into its own site-packages.
USER 50000
WORKDIR /opt/airflow/recsys-src
COPY --chown=airflow:root pyproject.toml README.md ./
COPY --chown=airflow:root requirements/constraints.txt requirements/constraints.txt
# The constraints pin apache-airflow to the base image's version, so pip never swaps Airflow itself.
# helm-python-sdk is the Helm engine the AKS deploy backend drives (no helm binary needed).
RUN mkdir recsys && touch recsys/__init__.py \
    && pip install --extra-index-url "${TORCH_INDEX}" -c requirements/constraints.txt \
        ".[${EXTRAS}]" helm-python-sdk \
    && pip uninstall -y recsys
COPY --chown=airflow:root recsys/ recsys/
RUN pip install --no-deps . \
    && python -c "import airflow, recsys, helm_python; print('airflow', airflow.__version__)"
WORKDIR /opt/airflow
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root helm/ /opt/airflow/helm/
# The base image's entrypoint (dumb-init + airflow) stays; the chart sets each component's command.
