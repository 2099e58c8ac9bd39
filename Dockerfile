# One image for the farm gateway (`farm serve`) and every Ray pod (head, video, audio and CPU
# workers): the Ray client needs the same Python and Ray on both ends, and the chart runs it all.
#
#   docker build -t farm:0.1.0 .
#
# CUDA comes from PyPI: torch's Linux x86_64 wheel is the CUDA build and pulls the nvidia-* runtime
# wheels (torch 2.13.0 on PyPI is built for CUDA 13.0: nvidia-cublas 13.x, cudnn-cu13, nccl-cu13).
# The GPU nodes only need an NVIDIA driver new enough for CUDA 13 (R580 or later) and the device
# plugin that hands out nvidia.com/gpu. No CUDA base image is needed for that.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

# bash and wget: KubeRay starts Ray with `bash -c 'ulimit ...; ray start ...'` and probes the
# raylet with wget. tini forwards signals to farm and reaps its child processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash wget ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# uid/gid 1000 match the chart's podSecurityContext (runAsUser/runAsGroup/fsGroup).
RUN groupadd --gid 1000 farm \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash farm

WORKDIR /opt/farm

# Torch first, with the same exact pin as the Makefile (TORCH_SPEC): a layer of its own, cached
# across code changes. pyproject's torch range then installs nothing more.
RUN pip install torch==2.13.0

COPY pyproject.toml README.md ./
COPY farm ./farm
COPY models ./models
COPY kernels ./kernels
RUN pip install . \
 && farm --help > /dev/null

USER 1000:1000
ENV HOME=/home/farm
WORKDIR /home/farm

# gRPC (API, grpc.health.v1, reflection) and HTTP (REST, results, /metrics, /healthz).
EXPOSE 50051 8080

# The gateway Deployment passes `serve ...` as args; KubeRay replaces the command of Ray pods.
ENTRYPOINT ["/usr/bin/tini", "--", "farm"]
CMD ["--help"]
