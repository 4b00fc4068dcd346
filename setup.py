"""keras_signflip: sign-flip, FlipOut and lottery-ticket pruning for Keras (TF-MOT and Keras 3)."""
import setuptools

setuptools.setup(
    name="keras_signflip",
    version="0.3.0",
    description=("Sign-flip, FlipOut hybrid and reference-sign pruning criteria, "
                 "global pruning and lottery tickets for TF-MOT (tf_keras) and "
                 "Keras 3 on TensorFlow, JAX and PyTorch."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["keras_signflip", "keras_signflip.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        # TF-MOT 0.8 needs Keras 2 (tf_keras) of the same minor as TensorFlow;
        # keras_signflip subclasses TF-MOT internals, so 0.8.x only.
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.16",  # summaries; no longer a TensorFlow dependency
        "absl-py>=1.0",
        "numpy>=1.23",
    ],
    extras_require={
        # The Keras 3 path: Keras itself (TensorFlow >= 2.16 already brings
        # it) and, for those backends, JAX or PyTorch. torch is pinned to the
        # CPU build CI installs; any torch >= 2.1 works.
        "keras3": ["keras>=3.5"],
        "jax": ["keras>=3.5", "jax>=0.4.30"],
        "torch": ["keras>=3.5", "torch>=2.1"],
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "ruff>=0.5"],
        "plots": ["matplotlib>=3.5"],
        # benchmarks/compare.py: plots and the t quantiles of its intervals.
        "bench": ["matplotlib>=3.5", "scipy>=1.9"],
        # The documentation site (make docs): mkdocstrings reads the docstrings
        # statically (griffe), so building it imports no framework.
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
    },
    license="Apache-2.0",
)
