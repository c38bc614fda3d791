"""Typed, frozen configuration of a qscore run, its presets and its validation.

A run is described by frozen dataclasses: the learner's (:class:`QSMConfig`,
:class:`SACConfig` or :class:`TD3Config`: networks, losses, optimisers; the fields they share
are declared once, in :class:`OffPolicyConfig` and :class:`CriticOptions`) and
:class:`TrainConfig` (the environment and the loop around the learner, shared by all
algorithms). Each class checks its own fields' ranges (``check``); :func:`validate` checks
a whole run. :class:`RunConfig` holds them with the algorithm's name. Every constant of the
QSM authors' code is a field here; the ``paper`` preset reproduces their settings and the
``fast`` preset is the same algorithm with 2x256 networks for CPUs and tests.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field, fields
from typing import Any

from qscore.errors import ConfigError

BETA_SCHEDULES = ("vp", "cosine", "linear")
Q_SCORE_TARGETS = ("scaled", "normalized", "normalized_per_state")
ACTION_PRIORS = ("none", "uniform")
Q_SCORE_ACTIONS = ("replay", "policy")
Q_SCORE_AT = ("noisy", "clean")


@dataclass(frozen=True)
class CriticOptions:
    """Generic options of the critics' TD learning, shared by every algorithm (QSM, SAC, TD3),
    so that a baseline can get exactly the critic improvements QSM gets."""

    n_step: int = 1
    """[n] TD targets from n-step returns: the discounted rewards of up to n replayed steps,
    then gamma^m V(s_{t+m}); shorter where the episode ends (1: one-step TD, as the papers)."""
    n_step_fraction: float = 1.0
    """[w] share of replayed transitions whose TD target uses the n-step return; the others
    use one step, so the critics fit the mix (1 - w) y^(1) + w y^(n), a target with w times
    the off-policy bias of y^(n) (1: every transition, as ``n_step`` alone)."""
    critic_layer_norm: bool = False
    """Layer normalisation after every hidden layer of the critics (before the relu)."""
    normalize_rewards: bool = False
    """Divide rewards by their root mean square in the first update's batch (then fixed), so
    the critics see rewards of unit scale whatever the task's units."""
    td_disagreement_penalty: float = 0.0
    """[beta] extra pessimism of the TD target where the target critics disagree: the value of
    a next action is min_j Q_target_j - beta * std_j Q_target_j (0: the plain minimum, as in
    the papers; with twin critics, beta = 1 doubles the min's distance below their mean).
    Values in [-1, 0) make the target less pessimistic than the minimum: with twin critics,
    beta = -1 gives their mean."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first critic option out of its range. Like every
        config's ``check``, it expects fields of the right types (:func:`validate` checks
        those first) and ends with its base classes' rules."""
        _require(self.td_disagreement_penalty >= -1, "td_disagreement_penalty (beta) must be >= -1")
        _require(self.n_step >= 1, "n_step must be >= 1")
        _require(0 <= self.n_step_fraction <= 1, "n_step_fraction must be in [0, 1]")


@dataclass(frozen=True)
class OffPolicyConfig(CriticOptions):
    """The fields every off-policy learner (QSM, SAC, TD3) has: its networks, optimisers, TD
    target and update schedule, with the defaults the three share (a subclass whose default
    differs re-declares the field alone, without a docstring: QSM's 2x512 networks)."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the policy network: QSM's denoiser eps_theta (mish activations),
    SAC's Gaussian policy or TD3's deterministic one (relu activations)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of each critic Q_phi_j (relu activations)."""
    num_critics: int = 2
    """Size of the critic ensemble (twin critics, the clipped double-Q of TD3 and SAC: 2); TD
    targets take the minimum, as does SAC's actor loss."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy (QSM's denoiser: the start of its cosine decay)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    discount: float = 0.99
    """[gamma] discount factor of the TD target."""
    tau: float = 0.005
    """[tau] Polyak rate of the target critics (TD3: and of its target actor, both applied on
    actor updates)."""
    batch_size: int = 256
    """Replay transitions per update."""
    utd: int = 1
    """Updates per environment step (update-to-data ratio), all in one compiled call."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first shared field out of its range."""
        _require(self.num_critics >= 1, "num_critics must be >= 1")
        for name in ("actor_lr", "critic_lr"):
            _require(getattr(self, name) > 0, f"{name} must be > 0")
        _require(0 <= self.discount < 1, "discount (gamma) must be in [0, 1)")
        _require(0 < self.tau <= 1, "tau must be in (0, 1]")
        _require(self.batch_size >= 1, "batch_size must be >= 1")
        _require(self.utd >= 1, "utd must be >= 1")
        super().check()


@dataclass(frozen=True)
class QSMConfig(OffPolicyConfig):
    """Hyper-parameters of the Q-score matching learner.

    Paper symbols are given in brackets; defaults are the authors' settings (``paper``).
    """

    actor_hidden: tuple[int, ...] = (512, 512)  # the authors' 2x512 (see OffPolicyConfig)
    critic_hidden: tuple[int, ...] = (512, 512)  # the authors' 2x512 (see OffPolicyConfig)
    num_diffusion_steps: int = 5
    """[T] number of reverse (denoising) steps of the DDPM policy."""
    beta_schedule: str = "vp"
    """Noise schedule beta_t: ``vp`` (the authors' variance-preserving one), ``cosine``
    (Nichol and Dhariwal) or ``linear`` (beta_t evenly spaced, as the DDPM paper)."""
    beta_min: float = 0.1
    """[b_min] smallest rate of the continuous VP schedule (``vp`` only)."""
    beta_max: float = 10.0
    """[b_max] largest rate of the continuous VP schedule (``vp`` only)."""
    linear_beta_start: float = 1e-4
    """[beta_1] first beta of the ``linear`` schedule (the authors' code: 1e-4)."""
    linear_beta_end: float = 2e-2
    """[beta_T] last beta of the ``linear`` schedule (the authors' code: 2e-2)."""
    q_score_target: str = "scaled"
    """Regression target eps* of the denoiser, from g = grad_a Q(s, a_k): ``scaled`` (the
    paper: -alpha * g), ``normalized`` (-sigma_k * g / (lambda * mean|g|), mean over the
    batch) or ``normalized_per_state`` (the same with mean|g| taken per state)."""
    q_score_scale: float = 50.0
    """[alpha, the authors' M_q] scale of the ``scaled`` target -alpha * g."""
    q_score_temperature: float = 0.1
    """[lambda] temperature of the normalized targets, relative to the mean |g| (with
    ``target_action_spread`` set, its initial value)."""
    target_action_spread: float | None = None
    """[s*] spread of chain samples for one state that lambda is tuned towards, as SAC tunes
    its entropy temperature (normalized targets only): lambda falls while the measured
    ``action_spread`` is above s* (a greedier, narrower policy) and rises while it is below.
    None keeps lambda fixed. 0.577 is the spread of uniform actions on [-1, 1]."""
    temperature_lr: float = 3e-4
    """Step size of the update of log lambda towards ``target_action_spread``."""
    spread_states: int = 32
    """States of each batch at which the spread of the policy is measured for lambda."""
    spread_samples: int = 8
    """Chain samples per state for that measurement."""
    min_q_score_temperature: float = 0.01
    """Lower bound of the tuned lambda."""
    max_q_score_temperature: float = 10.0
    """Upper bound of the tuned lambda."""
    action_prior: str = "none"
    """``uniform`` adds to eps* the exact noise prediction of actions uniform on [-1, 1]^d at
    the noise level of a_k (:func:`qscore.diffusion.uniform_prior_eps`): the score of the
    action box, so that the chain contracts its start noise and the policy is the box tilted
    by Q rather than a Q ascent from noise amplified into the bounds. ``none``: the paper."""
    q_score_actions: str = "replay"
    """Actions that the actor loss noises to a_k and takes g at: ``replay`` (the paper: the
    batch's replay actions) or ``policy`` (fresh chain samples of the present policy at the
    batch's states, without gradient), so the denoiser is fitted where its own chain goes
    rather than where past policies acted; costs one more reverse chain per update."""
    q_score_at: str = "noisy"
    """Where the Q-score of the target at noise level k is taken: ``noisy`` (the paper:
    g = grad_a Q(s, a_k) at the noised action) or ``clean`` (g = grad_a Q(s, a_0) at the
    action before noising, divided by sqrt(alpha_bar_k): Tweedie's identity, under which
    the regression fits the exact score of the noised policy when a_0 is drawn from the
    policy, so that high noise levels get the posterior mean of the clean score rather than
    a gradient extrapolated far outside the box)."""
    q_score_from_target_critics: bool = False
    """Take g from the Polyak target critics instead of the online critics."""
    q_score_weight: float = 1.0
    """Weight of the Q-score part of the denoiser's target eps* (0: no Q-score, which with
    ``bc_weight`` 1 is diffusion behaviour cloning)."""
    bc_weight: float = 0.0
    """[w_BC] adds w_BC eps to the target eps*, where eps is the forward noise of the replay
    action: the denoising (behaviour-cloning) target, so that the policy becomes the replay
    or dataset distribution tilted by exp(Q / lambda) instead of an ascent from noise (QSM +
    BC, for offline training; 0: the paper)."""
    best_of_n_eval: int = 1
    """Evaluation acts with the best of this many chain samples by min_j Q_phi_j (1: one sample)."""
    best_of_n_explore: int = 1
    """Exploration takes the best of this many chain samples by Q before its noise (1: one)."""
    best_of_n_target: int = 1
    """TD targets take the max over this many noised chain samples a' of min_j Q_target_j(s', a')
    (1: one sample, as in the paper)."""
    time_features: int = 64
    """Number of learnable Fourier features of the diffusion step t."""
    time_hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of the MLP that embeds the Fourier features of t."""
    actor_lr_decay_steps: int = 2_000_000
    """Updates over which the actor learning rate decays to 0 (cosine); 0 keeps it constant."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to sampled actions while collecting data."""
    target_noise: float = 0.1
    """[sigma_target] std of the Gaussian noise added to next actions in the TD target."""
    target_noise_clip: float = 0.5
    """Bound of the target-action noise (TD3 convention; 5 sigma, so rarely active)."""
    sampling_temperature: float = 1.0
    """Scale of the noise injected at each reverse step (1.0: plain DDPM)."""
    clip_sampler: bool = True
    """Clip every reverse-chain iterate a_t to [-1, 1]."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first QSM field out of its range, then on the
        first shared one."""
        self._check_chain()
        self._check_target()
        if self.target_action_spread is not None:
            self._check_temperature_tuning(self.target_action_spread)
        for name in ("best_of_n_eval", "best_of_n_explore", "best_of_n_target"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1")
        _require(
            self.time_features >= 2 and self.time_features % 2 == 0,
            "time_features must be even, >= 2",
        )
        _require(self.actor_lr_decay_steps >= 0, "actor_lr_decay_steps must be >= 0")
        _require(self.temperature_lr > 0, "temperature_lr must be > 0")
        for name in ("exploration_noise", "target_noise", "target_noise_clip"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        _require(self.sampling_temperature >= 0, "sampling_temperature must be >= 0")
        super().check()

    def _check_chain(self) -> None:
        """The reverse chain and its noise schedule."""
        _require(self.num_diffusion_steps >= 1, "num_diffusion_steps (T) must be >= 1")
        _require(
            self.beta_schedule in BETA_SCHEDULES,
            f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}, got {self.beta_schedule!r}",
        )
        _require(0 < self.beta_min < self.beta_max, "need 0 < beta_min < beta_max")
        _require(
            0 < self.linear_beta_start <= self.linear_beta_end < 1,
            "need 0 < linear_beta_start <= linear_beta_end < 1",
        )

    def _check_target(self) -> None:
        """The denoiser's regression target eps*."""
        _require(
            self.q_score_target in Q_SCORE_TARGETS,
            f"q_score_target must be one of {', '.join(Q_SCORE_TARGETS)}, "
            f"got {self.q_score_target!r}",
        )
        _require(self.q_score_scale > 0, "q_score_scale (alpha) must be > 0")
        _require(
            self.action_prior in ACTION_PRIORS,
            f"action_prior must be one of {', '.join(ACTION_PRIORS)}, got {self.action_prior!r}",
        )
        _require(
            self.q_score_actions in Q_SCORE_ACTIONS,
            f"q_score_actions must be one of {', '.join(Q_SCORE_ACTIONS)},"
            f" got {self.q_score_actions!r}",
        )
        _require(
            self.q_score_at in Q_SCORE_AT,
            f"q_score_at must be one of {', '.join(Q_SCORE_AT)}, got {self.q_score_at!r}",
        )
        _require(self.q_score_temperature > 0, "q_score_temperature (lambda) must be > 0")
        _require(self.q_score_weight >= 0, "q_score_weight must be >= 0")
        _require(self.bc_weight >= 0, "bc_weight (w_BC) must be >= 0")
        _require(
            self.q_score_weight + self.bc_weight > 0, "q_score_weight and bc_weight are both 0"
        )
        _require(
            self.bc_weight == 0 or self.q_score_actions == "replay",
            "bc_weight clones the replay actions; it needs q_score_actions = replay",
        )

    def _check_temperature_tuning(self, spread: float) -> None:
        """The tuning of lambda towards ``target_action_spread`` = ``spread`` (when set)."""
        _require(
            _is_finite_number(spread) and 0 < spread < 1,
            f"target_action_spread must be in (0, 1) or None, got {spread!r}",
        )
        _require(
            self.q_score_target != "scaled",
            "target_action_spread tunes lambda, which only the normalized q_score_targets use",
        )
        _require(
            0
            < self.min_q_score_temperature
            <= self.q_score_temperature
            <= self.max_q_score_temperature,
            "need 0 < min_q_score_temperature <= q_score_temperature <= max_q_score_temperature",
        )
        _require(
            1 <= self.spread_states <= self.batch_size,
            f"spread_states must be in [1, batch_size = {self.batch_size}]",
        )
        _require(self.spread_samples >= 2, "spread_samples must be >= 2")


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Hyper-parameters of the SAC learner; defaults follow the SAC paper (Table 1)."""

    temperature_lr: float = 3e-4
    """Adam learning rate of log_alpha, the log of the entropy temperature."""
    init_temperature: float = 1.0
    """[alpha_0] initial entropy temperature (log_alpha starts at its log)."""
    target_entropy: float | None = None
    """[H_target] entropy the temperature steers the policy to; None means -action_dim."""
    log_std_min: float = -5.0
    """Lower bound of log sigma before tanh. -5 (sigma = 0.0067) rather than the original
    -20: it is already a near-deterministic policy on [-1, 1], while sigma = 2e-9 gives
    float32 log-densities and gradients large enough to destabilise the entropy terms."""
    log_std_max: float = 2.0
    """Upper bound of log sigma. The network's raw output is mapped smoothly into
    [log_std_min, log_std_max] by a scaled tanh, so its gradient never vanishes at a clip."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first SAC field out of its range, then on the
        first shared one."""
        _require(self.init_temperature > 0, "init_temperature must be > 0")
        _require(self.log_std_min < self.log_std_max, "need log_std_min < log_std_max")
        _require(
            self.target_entropy is None or _is_finite_number(self.target_entropy),
            "target_entropy must be a finite number or None",
        )
        _require(self.temperature_lr > 0, "temperature_lr must be > 0")
        super().check()


@dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    """Hyper-parameters of the TD3 learner; defaults are the paper's, as commonly run
    (256-unit layers and learning rate 3e-4, as in the authors' published code)."""

    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to the policy's actions while collecting data."""
    target_noise: float = 0.2
    """[sigma~] std of the target policy smoothing noise added to a' in the TD target."""
    target_noise_clip: float = 0.5
    """[c] bound of the target policy smoothing noise."""
    policy_delay: int = 2
    """[d] critic updates per actor (and target) update."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first TD3 field out of its range, then on the
        first shared one."""
        _require(self.policy_delay >= 1, "policy_delay must be >= 1")
        for name in ("exploration_noise", "target_noise", "target_noise_clip"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        super().check()


AgentConfig = QSMConfig | SACConfig | TD3Config
ALGORITHM_CONFIGS: dict[str, type] = {"qsm": QSMConfig, "sac": SACConfig, "td3": TD3Config}
"""The config class of each learning algorithm, by its ``--algo`` name."""


@dataclass(frozen=True)
class TrainConfig:
    """The environment and the loop around the learner."""

    env_id: str = "Hopper-v4"
    """Gymnasium id of a task with a Box action space."""
    seed: int = 0
    """Seeds the networks, the replay sampling, the training env and (offset) the eval env."""
    total_steps: int = 1_000_000
    """Environment steps of the run."""
    warmup_steps: int = 10_000
    """Initial steps with uniform-random actions and no updates."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (oldest are overwritten). An offline run's buffer
    holds its whole dataset plus ``online_steps`` instead."""
    eval_every: int = 10_000
    """Environment steps between evaluations (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation, on a separate env instance, without exploration noise."""
    checkpoint_every: int = 100_000
    """Environment steps between periodic checkpoints (0: only the final one)."""
    log_every: int = 1_000
    """Environment steps between rows of train.csv and TensorBoard scalars."""
    action_repeat: int = 1
    """Simulator steps per agent decision (rewards summed); steps count decisions."""
    reward_scale: float = 1.0
    """Multiplies the training env's rewards (and so train.csv's episode returns); evaluation
    reports raw returns. For testing that a learner is invariant to the reward scale."""
    offline_dataset: str = ""
    """An OGBench-format dataset (``.npz``, see :mod:`qscore.datasets`) to train from
    offline: the run's ``total_steps`` steps are then updates on it alone, without the
    environment (which only evaluates). Empty: online training."""
    online_steps: int = 0
    """Environment steps after the offline updates (offline runs only): the offline agent
    goes on learning online, its dataset kept in the replay, with no warm-up."""
    pipeline: bool = False
    """Step the environments while the device runs the updates: each step's actions come
    from the parameters before that step's updates (one step older than without it), and
    the updates then run while the host steps the environments. Off: store, update, act in
    one compiled call, so actions use the freshest parameters."""

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first field of the loop out of its range."""
        _require(self.total_steps >= 1, "total_steps must be >= 1")
        _require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _require(self.buffer_size >= 1, "buffer_size must be >= 1")
        for name in ("eval_every", "checkpoint_every", "seed"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        _require(self.eval_episodes >= 1, "eval_episodes must be >= 1")
        _require(self.log_every >= 1, "log_every must be >= 1")
        _require(self.action_repeat >= 1, "action_repeat must be >= 1")
        _require(self.reward_scale > 0, "reward_scale must be > 0")
        _require(self.online_steps >= 0, "online_steps must be >= 0")
        _require(
            self.online_steps == 0 or bool(self.offline_dataset),
            "online_steps continues an offline run; it needs offline_dataset",
        )
        _require(bool(self.env_id), "env_id must not be empty")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: the algorithm, its learner's and the loop's configuration."""

    agent: AgentConfig = field(default_factory=QSMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "paper"
    algo: str = "qsm"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RunConfig:
        """Rebuild a config written by :meth:`to_dict` (lists become tuples again)."""
        algo = data.get("algo", "qsm")
        agent = dict(data.get("agent", {}))
        if "denoise_replay_actions" in agent:  # runs from before bc_weight replaced it
            agent["bc_weight"] = 1.0 if agent.pop("denoise_replay_actions") else 0.0
        return make_config(data.get("preset", "paper"), agent, data.get("train", {}), algo)


FAST_NETWORKS: dict[str, Any] = {"actor_hidden": (256, 256), "critic_hidden": (256, 256)}
"""The ``fast`` preset of every algorithm: 2x256 networks. For QSM it halves the authors'
2x512; SAC's and TD3's papers already use 2x256, so for them ``fast`` equals ``paper``,
stated explicitly so that one preset name runs the three algorithms alike (sweeps whose
``algos`` mix them) whatever the defaults become."""

ROBUST_CRITIC: dict[str, Any] = {
    "normalize_rewards": True,
    "critic_layer_norm": True,
    "td_disagreement_penalty": -0.5,
    "n_step": 3,
    "n_step_fraction": 0.5,
}
"""The generic critic options of QSM's ``robust`` preset (:class:`CriticOptions`): reward
normalisation, layer-normalised critics, a TD target halfway between the twin minimum and
the mean (beta = -0.5), 3-step returns for half of the replayed transitions. SAC's and
TD3's ``robust`` presets are exactly these, for comparisons on equal footing."""

ROBUST_QSM: dict[str, Any] = {
    **FAST_NETWORKS,
    "q_score_target": "normalized",
    "q_score_temperature": 0.6,
    "best_of_n_eval": 32,
    "best_of_n_explore": 1,
    **ROBUST_CRITIC,
}
"""QSM that learns where the authors' settings fail (docs/robust_qsm.md): the same
denoiser-matched-to-a-Q-score update (the authors' T = 5 VP chain) with a scale-free target
whose size follows the noise level, at a temperature (lambda = 0.6) wide enough to explore
from one chain sample yet stable over the chain's steps; reward normalisation; layer-normalised
critics whose TD target values the next action halfway between the minimum of the two
target critics and their mean (beta = -0.5, less pessimistic than the paper's minimum) and
is a 3-step return for half of the replayed transitions and a one-step return for the
rest; evaluation by the best of 32 chain samples by Q; 2x256 networks, as our SAC and
TD3."""

OFFLINE_QSM: dict[str, Any] = {
    **ROBUST_QSM,
    "bc_weight": 1.0,
    "q_score_weight": 0.25,
    "q_score_temperature": 0.3,
    "td_disagreement_penalty": 0.0,
}
"""QSM + BC for offline training (``--offline``): the ``robust`` settings with the denoising
(behaviour-cloning) target at weight 1 and a quarter of the Q-score at lambda = 0.3, so the
chain samples the dataset's actions gently tilted by Q (stronger tilts drove the policy
into the action bounds on the bandit of docs/offline.md); acting by the best of 32 chain
samples under Q; and the paper's pessimistic TD target (the minimum of the twin target
critics, beta = 0) rather than robust's halfway-to-the-mean one, since actions outside the
data must not look better than they are."""

DIFFUSION_BC: dict[str, Any] = {**OFFLINE_QSM, "q_score_weight": 0.0, "best_of_n_eval": 1}
"""Diffusion behaviour cloning, the offline baseline: the same denoiser and chain trained by
the denoising loss on the dataset's actions alone (no Q-score term), acting with one chain
sample. Its critics still learn (they cost time but give the Q diagnostics in eval.csv)."""

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "qsm": {
        "paper": {},
        "fast": FAST_NETWORKS,
        "robust": ROBUST_QSM,
        "offline": OFFLINE_QSM,
        "bc": DIFFUSION_BC,
    },
    "sac": {"paper": {}, "fast": FAST_NETWORKS, "robust": ROBUST_CRITIC},
    "td3": {"paper": {}, "fast": FAST_NETWORKS, "robust": ROBUST_CRITIC},
}
"""Named overrides of each algorithm's config defaults. ``paper`` is the setting of the
algorithm's paper (for QSM: the authors' code); its dict is empty on purpose: the defaults
of :class:`QSMConfig`, :class:`SACConfig` and :class:`TD3Config` are their papers'
settings. ``fast`` is :data:`FAST_NETWORKS` (2x256 networks, which SAC and
TD3 already have); ``robust`` is QSM with the options of :data:`ROBUST_QSM`, and SAC or TD3
with exactly its generic critic options (:data:`ROBUST_CRITIC`): the fair baselines. QSM's
``offline`` (QSM + BC) and ``bc`` (diffusion BC) are for training from datasets."""


DEFAULT_PRESETS: dict[str, str] = {"qsm": "robust", "sac": "paper", "td3": "paper"}
"""The preset ``qscore train`` and sweeps use when none is named. For QSM it is ``robust``,
which beats ``paper`` on every task of docs/robust_qsm.md; ``paper`` stays the faithful
reproduction of the authors' code."""


def _from_flat(cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    converted = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        is_sequence = isinstance(default, tuple) and isinstance(value, (list, tuple))
        converted[name] = tuple(value) if is_sequence else value
    return cls(**converted)


def make_config(
    preset: str = "paper",
    agent_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    algo: str = "qsm",
) -> RunConfig:
    """Build and validate a run config from an algorithm, a preset and field overrides."""
    if algo not in ALGORITHM_CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(PRESETS)}")
    if preset not in PRESETS[algo]:
        choices = ", ".join(PRESETS[algo])
        raise ConfigError(f"unknown preset {preset!r} for {algo}; choose one of {choices}")
    agent_values = {**PRESETS[algo][preset], **(agent_overrides or {})}
    agent = _from_flat(ALGORITHM_CONFIGS[algo], agent_values)
    train = _from_flat(TrainConfig, train_overrides or {})
    return validate(RunConfig(agent=agent, train=train, preset=preset, algo=algo))


def field_doc(cls: type, name: str) -> str:
    """The docstring under a config field, whole and on one line, taken from the source of
    the class or of the nearest base class that declares it with one ("" when none does)."""
    for owner in cls.__mro__:
        if name in getattr(owner, "__annotations__", {}):
            doc = _doc_in_source(owner, name)
            if doc:  # else a subclass re-declares the default alone: the base documents it
                return doc
    return ""


def _doc_in_source(cls: type, name: str) -> str:
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return ""
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:") and i + 1 < len(lines):
            text = lines[i + 1].strip()
            if not text.startswith('"""'):
                return ""
            text = text[3:]
            for follow in lines[i + 2 :]:
                if text.endswith('"""'):
                    break
                text += " " + follow.strip()
            return text.removesuffix('"""').strip()
    return ""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_types(section: Any) -> None:
    """Each field of the dataclass instance ``section`` has the type of its default."""
    for f in fields(section):
        value = getattr(section, f.name)
        default = getattr(type(section)(), f.name)
        if isinstance(default, bool):
            _require(isinstance(value, bool), f"{f.name} must be true or false, got {value!r}")
        elif isinstance(default, int):
            _require(
                isinstance(value, int) and not isinstance(value, bool),
                f"{f.name} must be an integer, got {value!r}",
            )
        elif isinstance(default, float):
            _require(_is_finite_number(value), f"{f.name} must be a finite number, got {value!r}")
        elif isinstance(default, str):
            _require(isinstance(value, str), f"{f.name} must be a string, got {value!r}")
        elif isinstance(default, tuple):
            _require(
                isinstance(value, tuple)
                and len(value) > 0
                and all(isinstance(w, int) and w > 0 for w in value),
                f"{f.name} must be a non-empty list of positive widths, got {value!r}",
            )


def validate(config: RunConfig) -> RunConfig:
    """Check every field's type and range; raise :class:`ConfigError` naming the first bad one.

    The types of both sections first, then the learner's own rules (its ``check``, which
    ends with those of :class:`OffPolicyConfig` and :class:`CriticOptions`), then the loop's
    (:meth:`TrainConfig.check`), then the rule between the two."""
    agent, train = config.agent, config.train
    _check_types(agent)
    _check_types(train)
    agent.check()
    train.check()
    _require(
        agent.batch_size <= train.buffer_size,
        f"batch_size ({agent.batch_size}) is larger than buffer_size ({train.buffer_size})",
    )
    return config
