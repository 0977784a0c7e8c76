# The one image every Kubeflow component runs in.
#   CPU (default):  docker build -t mug:0.1.0 .
#   CUDA:           docker build --build-arg BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 -t mug:0.1.0-cuda .
# PyPI's torch wheels for Linux x86_64 carry their own CUDA libraries, so the same install serves both bases;
# the CUDA base adds the driver-compatible runtime a GPU node expects.
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH="torch==2.14.1 torchvision==0.29.1"
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 WANDB_MODE=offline DVC_NO_ANALYTICS=1 \
    VIRTUAL_ENV=/opt/mug/.venv PATH=/opt/mug/.venv/bin:$PATH

# The distribution's own python3/venv/git: pinning their versions would tie the file to one base image release.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv git && \
      rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --create-home --uid 1000 mug

WORKDIR /opt/mug
COPY pyproject.toml README.md requirements.lock ./
COPY mug ./mug
COPY components ./components
COPY pipelines ./pipelines
# The same steps as the Makefile's `install` target, with the same locked versions (kfp included: the components
# run with install_kfp_package=False). The pins come through `-c requirements.lock`, which hadolint does not read.
# hadolint ignore=DL3013
RUN python3 -m venv .venv \
 && pip install --quiet ${TORCH} \
 && pip install --quiet -c requirements.lock . \
 && pip check

USER 1000
ENTRYPOINT ["mug"]
CMD ["--help"]
