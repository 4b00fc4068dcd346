"""L0 regularisation's hard-concrete gates (Louizos, Welling & Kingma 2018), for both families.

Every kernel weight theta gets a gate z in [0, 1] with a learnt log_alpha:

    training:  u ~ U(0, 1);  s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
               z = clip(s * (zeta - gamma) + gamma, 0, 1)       (one draw per weight per step)
    test:      z = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)
    penalty:   strength * sum sigmoid(log_alpha - beta * log(-gamma / zeta))   (the expected L0)

and the layer computes with theta * z. beta = 2/3, gamma = -0.1, zeta = 1.1 (the
paper's). Written against `xp` (`keras_signflip.array_namespace`); each family's
`l0` module draws u and wraps the layer.
"""
import math

from keras_signflip import arguments

__all__ = ["BETA", "GAMMA", "ZETA", "UNIFORM_RANGE", "check", "initial_log_alpha", "gates",
           "expected_l0"]

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
UNIFORM_RANGE = (1e-6, 1 - 1e-6)  # u's draws: log u and log(1 - u) stay finite


def check(strength, init_keep, beta, gamma, zeta):
  """(strength, init_keep, beta, gamma, zeta) as floats, or a ValueError naming the bad one."""
  strength = arguments.check_nonnegative("strength", strength)
  init_keep = arguments.check_number("init_keep", init_keep, 0, 1, False, False)
  beta, gamma, zeta = (arguments.check_number(n, v) for n, v in
                       (("beta", beta), ("gamma", gamma), ("zeta", zeta)))
  if not (beta > 0 and gamma < 0 and zeta > 1):
    raise ValueError("The hard-concrete distribution needs beta > 0, gamma < 0 and zeta > 1; "
                     f"received beta={beta}, gamma={gamma}, zeta={zeta}.")
  return strength, init_keep, beta, gamma, zeta


def initial_log_alpha(init_keep):
  """log(p / (1 - p)): log_alpha's initial mean for a gate open with probability p."""
  return math.log(init_keep / (1 - init_keep))


def gates(log_alpha, beta, gamma, zeta, xp, u=None):
  """z: sampled from uniform draws `u` (training), or deterministic (u None: test)."""
  if u is None:
    s = xp.sigmoid(log_alpha)
  else:
    s = xp.sigmoid((xp.log(u) - xp.log(1 - u) + log_alpha) / beta)
  return xp.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


def expected_l0(log_alpha, beta, gamma, zeta, xp):
  """sum sigmoid(log_alpha - beta * log(-gamma / zeta)): the expected open gates."""
  return xp.sum(xp.sigmoid(log_alpha - beta * math.log(-gamma / zeta)))
