"""Lottery tickets: rewind points, re-initialisation, the iterative loop, early-bird.

Generic over both wrapper families: these modules import no framework and
reach weights only through `keras_signflip.families`, so they run on tf_keras
and on Keras 3 (TensorFlow, JAX or PyTorch) alike.

| module | what |
|---|---|
| `rewind` | `RewindPoint` (a callback), `snapshot`, `restore`, durations ("500it", "2ep") |
| `reinit` | re-initialising survivors: rewind, signed_constant, random, shuffle |
| `loop` | `run`: iterative pruning with rewinding, resumable and extendable |
| `config` | `LotteryConfig`, `kept_counts`, `config_record`: what may change in a directory |
| `run_dir` | `check_output_dir`, `read_config`, `OutputDirError`: may a directory take a run |
| `files` | `RunFiles`, `save_masks`/`load_masks`, `load_results`: artifacts, written atomically |
| `plots` | `plot`: accuracy and early-stopping step against weights remaining |
| `early_bird` | `EarlyBird`: stop when the drawn mask stops changing |

The names in `__all__` (`run`, `LotteryConfig`, ...) are re-exported here,
and from `loop` too, where they all lived before the split.
"""
from keras_signflip.lottery import early_bird, reinit, rewind
from keras_signflip.lottery.config import LotteryConfig, config_record, kept_counts
from keras_signflip.lottery.files import RunFiles, load_masks, load_results, save_masks
from keras_signflip.lottery.loop import run
from keras_signflip.lottery.plots import plot
from keras_signflip.lottery.run_dir import OutputDirError, check_output_dir, read_config

__all__ = ["early_bird", "reinit", "rewind", "LotteryConfig", "OutputDirError", "RunFiles",
           "check_output_dir", "config_record", "kept_counts", "load_masks", "load_results",
           "plot", "read_config", "run", "save_masks"]
