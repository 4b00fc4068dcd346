"""The plots of a lottery run: test accuracy and early-stopping step against
the % of weights remaining, one line per re-initialisation mode.

matplotlib is imported when a plot is drawn, not with this module: running the
loop needs no plotting library.
"""
from keras_signflip.lottery import reinit as reinit_lib
from keras_signflip.lottery.files import replace_atomically

__all__ = ["plot"]


def plot(results, files, title=""):
  """PNG plots: test accuracy and early-stop step vs % weights remaining (log)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  modes = sorted({r["mode"] for r in results}, key=lambda m: reinit_lib.MODES.index(m))
  dense = [r for r in results if r["round"] == 0]
  for key, filename, label in (("test_accuracy", files.plot_accuracy, "test accuracy"),
                           ("early_stop_step", files.plot_early_stop, "early-stopping step")):
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in modes:
      rows = sorted(dense + [r for r in results if r["mode"] == mode and r["round"] > 0],
                    key=lambda r: -r["weights_remaining_pct"])
      ax.plot([r["weights_remaining_pct"] for r in rows], [r[key] for r in rows],
              marker="o", label=mode)
    ax.set_xscale("log")
    ticks = sorted({round(r["weights_remaining_pct"], 1) for r in results}, reverse=True)
    ax.set_xticks(ticks[::max(len(ticks) // 8, 1)])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("% of weights remaining")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    replace_atomically(filename, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
