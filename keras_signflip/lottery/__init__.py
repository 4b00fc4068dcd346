"""Lottery tickets: rewind points, re-initialisation, the iterative loop, early-bird.

Generic over both wrapper families: these modules import no framework and
reach weights only through `keras_signflip.families`, so they run on tf_keras
and on Keras 3 (TensorFlow, JAX or PyTorch) alike.

| module | what |
|---|---|
| `rewind` | `RewindPoint` (a callback), `snapshot`, `restore`, durations ("500it", "2ep") |
| `reinit` | re-initialising survivors: rewind, signed_constant, random, shuffle |
| `loop` | `LotteryConfig` and `run`: iterative pruning with rewinding, resumable and extendable, one configuration per directory |
| `early_bird` | `EarlyBird`: stop when the drawn mask stops changing |

`keras_signflip.lottery.run`, `LotteryConfig` and the loop's other names
are re-exported here.
"""
from keras_signflip.lottery import early_bird, reinit, rewind
from keras_signflip.lottery.loop import (LotteryConfig, OutputDirError, RunFiles,
                                         check_output_dir, config_record, kept_counts,
                                         load_masks, load_results, plot, read_config, run,
                                         save_masks)

__all__ = ["early_bird", "reinit", "rewind", "LotteryConfig", "OutputDirError", "RunFiles",
           "check_output_dir", "config_record", "kept_counts", "load_masks", "load_results",
           "plot", "read_config", "run", "save_masks"]
