# Build matrix: one image per CUDA version. Run from the repository root:
#   docker buildx bake -f docker/docker-bake.hcl            # all three
#   docker buildx bake -f docker/docker-bake.hcl cu128      # one
#   IMAGE=ghcr.io/me/comfyhost TAG=0.1.0 GIT_SHA=$(git rev-parse HEAD) \
#     docker buildx bake -f docker/docker-bake.hcl --push
# Each variant pairs a CUDA base with the PyTorch wheel index built for it and the GPU
# architectures SageAttention is compiled for (only those that CUDA's nvcc can target).

variable "IMAGE" { default = "comfyhost" }
variable "TAG" { default = "dev" }
variable "GIT_SHA" { default = "unknown" }
variable "COMFYUI_REF" { default = "v0.3.64" }
variable "MAX_JOBS" { default = "4" }

group "default" {
  targets = ["cu124", "cu128", "cu130"]
}

target "_common" {
  context    = "."
  dockerfile = "docker/Dockerfile"
  target     = "runtime"
  platforms  = ["linux/amd64"]
  args = {
    COMFYUI_REF = COMFYUI_REF
    GIT_SHA     = GIT_SHA
    MAX_JOBS    = MAX_JOBS
  }
}

# CUDA 12.4: Ampere, Ada, Hopper. PyTorch 2.6 is the last release with cu124 wheels.
# No Blackwell: sm_100/sm_120 need CUDA >= 12.8.
target "cu124" {
  inherits = ["_common"]
  args = {
    CUDA_VERSION          = "12.4.1"
    UBUNTU                = "ubuntu22.04"
    TORCH_INDEX           = "cu124"
    TORCH_CUDA            = "12.4"
    TORCH_VERSION         = "2.6.0"
    TORCHVISION_VERSION   = "0.21.0"
    TORCHAUDIO_VERSION    = "2.6.0"
    TORCH_CUDA_ARCH_LIST  = "8.0;8.6;8.9;9.0"
  }
  tags = ["${IMAGE}:${TAG}-cu124"]
}

# CUDA 12.8: adds Blackwell data centre (sm_100) and consumer/workstation (sm_120, RTX 50xx).
target "cu128" {
  inherits = ["_common"]
  args = {
    CUDA_VERSION          = "12.8.1"
    UBUNTU                = "ubuntu24.04"
    TORCH_INDEX           = "cu128"
    TORCH_CUDA            = "12.8"
    TORCH_VERSION         = "2.9.1"
    TORCHVISION_VERSION   = "0.24.1"
    TORCHAUDIO_VERSION    = "2.9.1"
    TORCH_CUDA_ARCH_LIST  = "8.0;8.6;8.9;9.0;10.0;12.0"
  }
  tags = ["${IMAGE}:${TAG}-cu128", "${IMAGE}:${TAG}"]
}

# CUDA 13.0: drops Maxwell/Pascal/Volta (sm_5x-7.0), which SageAttention never supported;
# needs a host driver >= 580.
target "cu130" {
  inherits = ["_common"]
  args = {
    CUDA_VERSION          = "13.0.1"
    UBUNTU                = "ubuntu24.04"
    TORCH_INDEX           = "cu130"
    TORCH_CUDA            = "13.0"
    TORCH_VERSION         = "2.9.1"
    TORCHVISION_VERSION   = "0.24.1"
    TORCHAUDIO_VERSION    = "2.9.1"
    TORCH_CUDA_ARCH_LIST  = "8.0;8.6;8.9;9.0;10.0;12.0"
  }
  tags = ["${IMAGE}:${TAG}-cu130"]
}
