"""The sparsity report both families return, from plain NumPy masks and flip counts."""
import numpy as np

__all__ = ["summarize"]


def summarize(masks, flips):
  """{'layers': {name: sparsity}, 'overall': sparsity, 'flips': {name: total}}.

  Args:
    masks: {weight name: 0/1 array}.
    flips: {weight name: flip-count array}.
  """
  sizes = {n: int(np.size(m)) for n, m in masks.items()}
  zeros = {n: sizes[n] - int(np.count_nonzero(m)) for n, m in masks.items()}
  total = sum(sizes.values())
  return {"layers": {n: zeros[n] / sizes[n] for n in masks},
          "overall": sum(zeros.values()) / total if total else 0.0,
          "flips": {n: int(np.sum(f)) for n, f in flips.items()}}
