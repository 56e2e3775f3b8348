"""mpformer_jax: multi-objective, multi-interest transformer retrievers in JAX/Flax."""
from setuptools import find_packages, setup

JAX = ">=0.7,<0.12"  # one range for jax and its accelerator extras (matching jaxlib wheels)

setup(
    name="mpformer_jax",
    version="0.1.0",
    description="MPFormer / KuaiFormer transformer retrievers for recommendation in JAX/Flax.",
    # the library only: launch/ and configs/ run from the checkout (as in big_vision)
    packages=find_packages(include=["mpformer_jax", "mpformer_jax.*"]),
    python_requires=">=3.11",
    install_requires=[
        f"jax{JAX}",
        "flax>=0.11,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "grain>=0.2.12,<0.3",
        "tensorflow-datasets>=4.9.8,<5",
        "array_record>=0.7",
        "pyarrow>=19,<27",
        "duckdb>=2.0,<3",
        "scann>=1.4,<2",
        "ml_collections>=1.0,<2",
        "absl-py>=2.1,<3",
        "numpy>=1.26",
        "scipy>=1.11,<2",  # sparse transition counts (retrieval/transitions.py)
        "tensorboardX>=2.6,<3",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",
        # serving: jax.export serialization, the HTTP service and its load-test client
        "flatbuffers>=24",
        "fastapi>=0.110,<1",
        "uvicorn>=0.29,<1",
        "httpx>=0.27,<1",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "hypothesis>=6.100,<7"],
        # NVIDIA GPUs: jaxlib plus the CUDA plugin and CUDA/cuDNN wheels of the same
        # version as jax ("cuda12" for drivers older than CUDA 13's); Cloud TPU VMs: libtpu.
        "cuda": [f"jax[cuda13]{JAX}"],
        "cuda12": [f"jax[cuda12]{JAX}"],
        "tpu": [f"jax[tpu]{JAX}"],
    },
)
