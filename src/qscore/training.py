"""The training loop: warm-up, exploration, replay, updates, evaluation, logs and checkpoints.

A run can stop at any moment and continue exactly: every checkpoint holds the agent, the
replay buffer and a :class:`LoopState` (counters, the acting and sampling keys, the pending
action and the actions of the episode in progress). Training episodes start from seeded
resets, so on resume the episode in progress is rebuilt by resetting with its seed and
replaying its actions.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np
from tqdm import tqdm

from qscore.agents import get_algorithm
from qscore.checkpoint import (
    checkpoint_dir,
    checkpoint_step,
    latest_checkpoint,
    load_run_checkpoint,
    prune_replay,
    save_run_checkpoint,
    step_name,
)
from qscore.config import RunConfig
from qscore.engine import (
    DeviceState,
    act_seeds,
    all_finite_seeds,
    create_state,
    diagnose_seeds,
    first_actions,
    learn_step,
    member,
    sample_spec,
    stack,
    store_and_act,
    train_step,
)
from qscore.envs import make_env, space_dims, wrap_env
from qscore.errors import ConfigError, RunDirError, TrainingDiverged, TrainingInterrupted
from qscore.evaluate import Trajectory, critic_error, run_episodes_seeds
from qscore.logs import CsvLog, TensorBoard
from qscore.replay import Transition, create_replay, load_replay, replay_state
from qscore.rundir import (
    check_run_dir,
    prepare_run_dir,
    run_seeds,
    seed_dirs,
    write_config,
    write_seeds,
    write_summary,
)

EVAL_SEED_OFFSET = 1_000_003
"""The eval env's seeds start at seed + this, far from the training env's seeds."""

EVAL_COLUMNS = ["step", "return_mean", "return_std", "episodes", "wall_time"]


def episode_seed(seed: int, episode: int) -> int:
    """Seed of the reset that starts training episode ``episode`` (0-based)."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


@dataclass
class LoopState:
    """Everything of one seed besides its agent and replay buffer needed to continue a run."""

    seed: int
    step: int = 0
    episodes: int = 0
    episode_return: float = 0.0
    episode_actions: list[list[float]] = field(default_factory=list)
    window_returns: list[float] = field(default_factory=list)
    best_eval: dict[str, float] | None = None
    last_eval: dict[str, float] | None = None
    elapsed_s: float = 0.0
    act_key: list[int] = field(default_factory=list)
    sample_key: list[int] = field(default_factory=list)
    next_action: list[float] = field(default_factory=list)
    """The action this seed takes at step ``step + 1`` (computed by the last device call)."""
    dataset_rows: int = 0
    """Rows of the offline dataset at the start of the replay (0: an online run)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluation_key(seed: int, step: int) -> jax.Array:
    """The key of the evaluation at ``step``: a function of the seed and step only, so that
    extra evaluations (say, at the end of a run later extended) change no other one."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), step)


def diagnostics_key(seed: int, step: int) -> jax.Array:
    """The key of the logged policy diagnostics at ``step`` (independent of all other keys)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 3), step)


DIAGNOSTIC_STATES = 32
"""Replay states at which the policy diagnostics are measured when a row is logged."""


def _check_finite_env(obs: np.ndarray, reward: float, step: int, where: str = "") -> None:
    if not np.all(np.isfinite(obs)):
        raise TrainingDiverged(
            f"the environment returned a non-finite observation at step {step}{where}"
        )
    if not math.isfinite(reward):
        raise TrainingDiverged(
            f"the environment returned a non-finite reward at step {step}{where}"
        )


def collect_transition(env: Any, obs: np.ndarray, action: np.ndarray) -> tuple:
    """Step ``env`` from ``obs`` with ``action``: the stored row (s, a, r, s', terminated,
    episode end) and whether the episode ended (the caller resets the env).

    Only ``terminated`` stops bootstrapping: a time-limit ``truncated`` end is stored as not
    terminated, with the true final observation as s' (and as an episode end, which stops
    n-step returns).
    """
    next_obs, reward, terminated, truncated, _ = env.step(action)
    next_obs = np.asarray(next_obs, np.float32)
    ended = bool(terminated or truncated)
    row = (obs, action, float(reward), next_obs, float(terminated), float(ended))
    return row, ended


def start_episode(env: Any, state: LoopState) -> np.ndarray:
    """Reset ``env`` for episode ``state.episodes`` and replay the actions already taken in it.

    For a new episode there are none; after a resume this rebuilds the env's state exactly
    for deterministic environments.
    """
    obs, _ = env.reset(seed=episode_seed(state.seed, state.episodes))
    for action in state.episode_actions:
        obs, *_ = env.step(np.asarray(action, np.float32))
    return np.asarray(obs, np.float32)


@contextmanager
def _stop_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT and SIGTERM into a request to stop after the current step."""
    requested: dict[str, int] = {}
    handlers = {}

    def request(signum: int, frame: Any) -> None:
        requested["signal"] = signum

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, request)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield requested
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@dataclass
class SeedRun:
    """The host-side objects of one seed of a run."""

    config: RunConfig
    run_dir: Path
    env: Any
    eval_env: Any
    state: LoopState
    obs: np.ndarray | None = None
    train_log: CsvLog | None = None
    eval_log: CsvLog | None = None
    board: TensorBoard | None = None

    def step_env(self, action: np.ndarray, step: int, where: str) -> tuple:
        """One training step of this seed's env: the stored row; resets at an episode end."""
        row, ended = collect_transition(self.env, self.obs, action)
        _check_finite_env(row[3], row[2], step, where)
        self.state.episode_return += row[2]
        self.state.episode_actions.append(action.tolist())
        if ended:
            self.state.window_returns.append(self.state.episode_return)
            self.state.episodes += 1
            self.state.episode_return, self.state.episode_actions = 0.0, []
            self.obs = start_episode(self.env, self.state)
        else:
            self.obs = row[3]
        return row


def _scaled(reward: float, factor: float) -> float:
    return factor * reward


def seed_config(config: RunConfig, seed: int) -> RunConfig:
    return replace(config, train=replace(config.train, seed=seed))


EnvFactory = Callable[[], gym.Env]
"""Makes a fresh Gymnasium env (for tasks that are not registered ids)."""


def _new_seed_run(
    config: RunConfig, seed: int, run_dir: Path, env_factory: EnvFactory | None = None
) -> SeedRun:
    """Envs (made by ``env_factory`` if given, else from the config's id) and a fresh loop
    state for one seed of ``config``."""
    cfg = seed_config(config, seed)
    tc = cfg.train

    def new_env(env_seed: int) -> gym.Env:
        if env_factory is None:
            return make_env(tc.env_id, seed=env_seed, action_repeat=tc.action_repeat)
        return wrap_env(env_factory(), tc.env_id, env_seed, tc.action_repeat)

    env = new_env(seed)
    if tc.reward_scale != 1.0:
        env = gym.wrappers.TransformReward(env, partial(_scaled, factor=tc.reward_scale))
    return SeedRun(cfg, run_dir, env, new_env(seed + EVAL_SEED_OFFSET), LoopState(seed=seed))


def replay_capacity(config: RunConfig, dataset_rows: int = 0) -> int:
    """Rows of each seed's buffer: the run's steps up to ``buffer_size``; for an offline run,
    the whole dataset plus the online steps."""
    tc = config.train
    if tc.offline_dataset:
        return dataset_rows + tc.online_steps
    return min(tc.buffer_size, tc.total_steps)


def load_offline_dataset(config: RunConfig, env: gym.Env) -> Transition | None:
    """The steps of the run's offline dataset, checked against ``env`` (None when online)."""
    if not config.train.offline_dataset:
        return None
    from qscore.datasets import load_transitions

    return load_transitions(config.train.offline_dataset, env, config.train.env_id)


def with_dataset(device: DeviceState, dataset: Transition, seeds: int) -> DeviceState:
    """Every seed's buffer filled with the rows of ``dataset``, oldest first."""
    rows = dataset._asdict()
    replay = load_replay(member(device.replays, 0), rows)
    return device.replace(replays=stack([replay] * seeds))


def train(
    config: RunConfig, run_dir: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Start a new single-seed run as ``config`` says, in ``run_dir``; returns its summary."""
    return train_seeds(
        config, [config.train.seed], run_dir, overwrite=overwrite, progress=progress
    )[0]


def train_seeds(
    config: RunConfig,
    seeds: list[int],
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    env_factory: EnvFactory | None = None,
) -> list[dict[str, Any]]:
    """Train one independent agent per seed in one process, their updates vmapped together.

    One seed writes its run to ``run_dir``; several write ``run_dir/seed_S/`` each, every one
    in the format of a single-seed run, plus ``run_dir/seeds.json``. Seed i's results are
    those of a single-seed run with seed i.
    """
    run_dir = Path(run_dir)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"--seeds must be distinct, got {seeds}")
    check_run_dir(run_dir, overwrite)  # before the slow part: envs, agents, compilation
    multi = len(seeds) > 1
    dirs = seed_dirs(run_dir, seeds) if multi else [run_dir]
    algorithm = get_algorithm(config.algo)
    runs = [
        _new_seed_run(config, seed, folder, env_factory)
        for seed, folder in zip(seeds, dirs, strict=True)
    ]
    dims = space_dims(runs[0].env)
    dataset = load_offline_dataset(config, runs[0].env)  # checked before anything is written
    rows = 0 if dataset is None else len(dataset.reward)
    agents = [algorithm.create(run.config.agent, *dims, run.state.seed) for run in runs]
    device = create_state(agents, seeds, dims, replay_capacity(config, rows))
    if dataset is not None:
        device = with_dataset(device, dataset, len(seeds))
        for run in runs:
            run.state.dataset_rows = rows
    prepare_run_dir(run_dir, overwrite)
    if multi:
        write_seeds(run_dir, seeds, config.algo)
    for run in runs:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run.run_dir, run.config.to_dict())
    return Loop(config, runs, device).run(progress)


def resume(config: RunConfig, run_dir: str | Path, *, progress: bool = True) -> list[dict]:
    """Continue a run (single- or multi-seed) from its newest checkpoint common to all seeds.

    ``config`` must be the run's own (see :mod:`qscore.cli`), except ``total_steps``,
    which may be raised to extend a run. Returns the summary of each seed.
    """
    run_dir = Path(run_dir)
    seeds = run_seeds(run_dir)
    dirs = seed_dirs(run_dir, seeds) if seeds else [run_dir]
    seeds = seeds or [config.train.seed]
    latest = [latest_checkpoint(folder) for folder in dirs]
    if any(checkpoint is None for checkpoint in latest):
        raise RunDirError(f"{run_dir} has no checkpoint to resume from")
    common_step = min(checkpoint_step(checkpoint) for checkpoint in latest)
    if common_step >= config.train.total_steps + config.train.online_steps:
        raise RunDirError(
            f"{run_dir} already ran {common_step} steps; pass a larger --steps to extend it"
        )
    algorithm = get_algorithm(config.algo)
    runs = [_new_seed_run(config, seed, folder) for seed, folder in zip(seeds, dirs, strict=True)]
    dims = space_dims(runs[0].env)
    agents, replays = [], []
    for run in runs:
        template = algorithm.create(run.config.agent, *dims, run.state.seed)
        checkpoint = checkpoint_dir(run.run_dir) / step_name(common_step)
        agent, loop, saved_replay = load_run_checkpoint(checkpoint, template)
        if saved_replay is None:
            raise RunDirError(f"{checkpoint} holds no replay buffer and cannot be resumed")
        if "sample_key" not in loop:
            raise RunDirError(f"{checkpoint} was written by an older qscore and cannot be resumed")
        run.state = LoopState(**loop)
        agents.append(agent)
        replays.append(saved_replay)
    return Loop(config, runs, restored_state(config, runs, agents, replays, dims)).run(progress)


def restored_state(config: RunConfig, runs: list[SeedRun], agents, replays, dims) -> DeviceState:
    """The device state of resumed seeds: their agents, refilled buffers and saved keys."""
    empty = create_replay(*dims, replay_capacity(config, runs[0].state.dataset_rows))
    return DeviceState(
        agents=stack(agents),
        replays=stack([load_replay(empty, replay) for replay in replays]),
        act_keys=jax.numpy.stack([_key(run.state.act_key) for run in runs]),
        sample_keys=jax.numpy.stack([_key(run.state.sample_key) for run in runs]),
    )


def _key(data: list[int]) -> jax.Array:
    return jax.numpy.asarray(np.asarray(data, np.uint32))


class Loop:
    """The training loop over every seed of a run at once: all seeds share the step counter.

    An offline run (``offline_dataset``) first makes ``total_steps`` steps of updates alone
    on its dataset's replay, then ``online_steps`` ordinary steps without warm-up.

    Each step, the host steps every seed's environment with the actions it holds, and one
    compiled call (:func:`qscore.engine.train_step`) stores the transitions, updates the
    agents and returns the next actions. Logging, evaluation and checkpoints come every
    ``--log-every``, ``--eval-every`` and ``--checkpoint-every`` steps.
    """

    def __init__(self, config: RunConfig, runs: list[SeedRun], device: DeviceState) -> None:
        self.config, self.runs, self.device = config, runs, device
        self.algorithm = get_algorithm(config.algo)
        self.spec = sample_spec(config.agent)
        self.action_dim = space_dims(runs[0].env)[1]
        self.metrics: dict[str, jax.Array] = {}
        self.tags = [self._tag(i) for i in range(len(runs))]
        self.start_step = runs[0].state.step
        tc = config.train
        self.offline_steps = tc.total_steps if tc.offline_dataset else 0
        """Steps 1..offline_steps are updates on the dataset alone (0: an online run)."""
        self.last_step = tc.total_steps + tc.online_steps
        self.warmup_steps = 0 if tc.offline_dataset else tc.warmup_steps
        self.clock_start = time.perf_counter() - runs[0].state.elapsed_s
        self.window_start, self.window_steps = time.perf_counter(), 0

    def run(self, progress: bool) -> list[dict]:
        """Train to the last step (``total_steps``, plus ``online_steps`` after offline
        updates); write every seed's summary.json whatever happens."""
        self._open_logs()
        actions = self._pending_actions()
        bar = tqdm(
            total=self.last_step,
            initial=self.start_step,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        step, statuses = self.start_step, ["completed"] * len(self.runs)
        try:
            with _stop_signals() as stop:
                for step in range(self.start_step + 1, self.last_step + 1):
                    actions = self._step(step, actions)
                    bar.update(1)
                    self._periodic(step, actions, stop, bar)
        except TrainingDiverged as error:
            statuses = [f"diverged: {error}"] * len(self.runs)
            last = latest_checkpoint(self.runs[0].run_dir)
            raise TrainingDiverged(
                f"{error}; training stopped. Last good checkpoint: {last or 'none'}"
            ) from None
        except TrainingInterrupted as interrupted:
            statuses = [str(interrupted.status)] * len(self.runs)
            raise
        except BaseException as error:
            statuses = [f"stopped at step {step}: {type(error).__name__}"] * len(self.runs)
            raise
        finally:
            bar.close()
            summaries = self._write_summaries(step, statuses)
        return summaries

    def _open_logs(self) -> None:
        for run in self.runs:
            run.train_log = CsvLog.resume(run.run_dir / "train.csv", self.start_step)
            run.eval_log = CsvLog.resume(run.run_dir / "eval.csv", self.start_step, EVAL_COLUMNS)
            purge = self.start_step + 1 if self.start_step else None
            run.board = TensorBoard(run.run_dir / "tensorboard", purge_step=purge)
            run.obs = start_episode(run.env, run.state)

    def _pending_actions(self) -> np.ndarray:
        """The actions of the next step: saved with a resumed run, computed for a new one
        (an offline run computes them when its online steps begin)."""
        if self.start_step < self.offline_steps:
            return np.zeros((len(self.runs), self.action_dim), np.float32)
        if self.start_step > 0:
            return np.asarray([run.state.next_action for run in self.runs], np.float32)
        return self._first_actions(warmup=self.warmup_steps >= 1)

    def _first_actions(self, warmup: bool) -> np.ndarray:
        """Actions at the envs' present observations before any transition is stored:
        uniform during warm-up, else the agents' exploration policy."""
        obs = np.stack([run.obs for run in self.runs])
        self.device, actions = first_actions(
            self.device, obs, warmup_action=warmup, action_dim=self.action_dim
        )
        return np.asarray(actions)

    def _step(self, step: int, actions: np.ndarray) -> np.ndarray:
        """Step every seed's env with ``actions``; one device call returns the next ones.
        An offline step only runs the updates on the dataset."""
        if step <= self.offline_steps:
            return self._offline_step(step, actions)
        rows = self._step_envs(step, actions)
        transitions = Transition(*(np.stack(column) for column in zip(*rows, strict=True)))
        next_obs = np.stack([run.obs for run in self.runs])
        warmup = self.warmup_steps
        self.window_steps += 1
        if self.config.train.pipeline:
            return self._pipelined_step(transitions, next_obs, step > warmup, step + 1 <= warmup)
        self.device, next_actions, metrics = train_step(
            self.device,
            transitions,
            next_obs,
            update_fn=self.algorithm.update,
            spec=self.spec,
            updates=step > warmup,
            warmup_action=step + 1 <= warmup,
            action_dim=self.action_dim,
        )
        if metrics:
            self.metrics = metrics
        return np.asarray(next_actions)

    def _offline_step(self, step: int, actions: np.ndarray) -> np.ndarray:
        """``utd`` updates on the dataset; at the last offline step, the first actions of
        the online steps that follow (if any)."""
        self.window_steps += 1
        self.device, self.metrics = learn_step(
            self.device, update_fn=self.algorithm.update, spec=self.spec
        )
        if step < self.offline_steps or step == self.last_step:
            return actions
        return self._first_actions(warmup=False)

    def _pipelined_step(
        self, transitions: Transition, next_obs: np.ndarray, updates: bool, warmup_action: bool
    ) -> np.ndarray:
        """Store and act, then start the updates and return without waiting for them: the
        host steps the envs while the device learns (``--pipeline``)."""
        self.device, next_actions = store_and_act(
            self.device, transitions, next_obs, warmup_action=warmup_action,
            action_dim=self.action_dim,
        )  # fmt: skip
        next_actions = np.asarray(next_actions)
        if updates:
            self.device, self.metrics = learn_step(
                self.device, update_fn=self.algorithm.update, spec=self.spec
            )
        return next_actions

    def _step_envs(self, step: int, actions: np.ndarray) -> list[tuple]:
        """Every seed's env stepped once, one after another (a thread pool was slower on
        the 2-core CPU at 2, 4 and 8 seeds: docs/benchmarks.md)."""
        calls = zip(self.runs, actions, self.tags, strict=True)
        return [run.step_env(action, step, tag) for run, action, tag in calls]

    def _periodic(self, step: int, actions: np.ndarray, stop: dict, bar: tqdm) -> None:
        """Logs, evaluations and checkpoints that fall on ``step``; stops on a signal."""
        tc = self.config.train
        last = step == self.last_step
        if step % tc.log_every == 0 or last or stop:
            self._log(step)
        if (tc.eval_every and step % tc.eval_every == 0) or last:
            self._evaluate(step)
            shown = np.mean([run.state.last_eval["return_mean"] for run in self.runs])
            bar.set_postfix(eval_return=f"{shown:.1f}")
        if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or last or stop:
            self._save(step, actions)
        if stop and not last:
            name = signal.Signals(stop["signal"]).name
            where = self.runs[0].run_dir if len(self.runs) == 1 else self.runs[0].run_dir.parent
            raise TrainingInterrupted(
                f"{name} received: stopped at step {step} with a checkpoint; continue "
                f"with: qscore train --resume {where}",
                status=f"interrupted by {name} at step {step}",
            )

    def _tag(self, i: int) -> str:
        return f" (seed {self.runs[i].state.seed})" if len(self.runs) > 1 else ""

    def _save(self, step: int, actions: np.ndarray) -> None:
        """A checkpoint of every seed (refused while any parameter is non-finite)."""
        finite = np.asarray(all_finite_seeds(self.device.agents))
        for i in range(len(self.runs)):
            if not finite[i]:
                raise TrainingDiverged(
                    f"non-finite network parameters at step {step}{self._tag(i)}"
                )
        act_keys, sample_keys = (
            np.asarray(self.device.act_keys),
            np.asarray(self.device.sample_keys),
        )
        for i, run in enumerate(self.runs):
            run.state.step = step
            run.state.elapsed_s = time.perf_counter() - self.clock_start
            run.state.act_key, run.state.sample_key = act_keys[i].tolist(), sample_keys[i].tolist()
            run.state.next_action = actions[i].tolist()
            replay = replay_state(member(self.device.replays, i))
            agent = member(self.device.agents, i)
            save_run_checkpoint(run.run_dir, step, agent, replay, run.state.to_json())
        for run in self.runs:  # only once every seed has its new checkpoint
            prune_replay(run.run_dir)

    def _evaluate(self, step: int) -> None:
        """Evaluation episodes of every seed, all seeds acting through one batched call."""
        tc, agents = self.config.train, self.device.agents
        seeds = [run.state.seed for run in self.runs]
        trajectories: list[list[Trajectory]] = [[] for _ in self.runs]
        successes: list[list[float]] = [[] for _ in self.runs]
        keys = np.stack([np.asarray(evaluation_key(seed, step)) for seed in seeds])
        returns = run_episodes_seeds(
            partial(act_seeds, agents, explore=False),
            [run.eval_env for run in self.runs],
            tc.eval_episodes,
            [seed + EVAL_SEED_OFFSET for seed in seeds],
            keys,
            trajectories=trajectories,
            successes=successes,
        )
        for i, run in enumerate(self.runs):
            result = {
                "step": step,
                "return_mean": float(returns[i].mean()),
                "return_std": float(returns[i].std()),
                "episodes": tc.eval_episodes,
                "wall_time": time.perf_counter() - self.clock_start,
                **critic_error(member(agents, i), trajectories[i]),
            }
            if successes[i]:
                result["success"] = float(np.mean(successes[i]))
            run.eval_log.append(result)
            logged = ("return_mean", "success", "q_bias", "q_relative_error")
            run.board.scalars("eval", {k: result[k] for k in logged if k in result}, step)
            run.state.last_eval = result
            best = run.state.best_eval
            if best is None or result["return_mean"] > best["return_mean"]:
                run.state.best_eval = {"step": step, "return_mean": result["return_mean"]}

    def _log(self, step: int) -> None:
        """A row of train.csv per seed: the last update's metrics (fetched from the device
        only now), the policy diagnostics and the episodes finished since the last row."""
        now = time.perf_counter()
        metrics = dict(self.metrics)
        if self.algorithm.diagnose is not None and metrics:
            keys = jax.numpy.stack([diagnostics_key(run.state.seed, step) for run in self.runs])
            diagnose = self.algorithm.diagnose
            metrics.update(diagnose_seeds(diagnose, self.device, keys, DIAGNOSTIC_STATES))
        for i, run in enumerate(self.runs):
            row: dict[str, Any] = {"step": step, "episodes": run.state.episodes}
            row.update(_episode_stats(run.state.window_returns))
            scalars = {name: float(value[i]) for name, value in metrics.items()}
            bad = sorted(name for name, value in scalars.items() if not math.isfinite(value))
            if bad:
                raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}{self._tag(i)}")
            row.update(scalars)
            row["steps_per_sec"] = self.window_steps / max(now - self.window_start, 1e-9)
            row["wall_time"] = now - self.clock_start
            run.train_log.append(row)
            run.board.scalars("train", {k: v for k, v in row.items() if k != "step"}, step)
            run.state.window_returns = []
        self.window_start, self.window_steps = now, 0

    def _write_summaries(self, step: int, statuses: list[str]) -> list[dict]:
        summaries = []
        for run, status in zip(self.runs, statuses, strict=True):
            run.board.close()
            summary = {
                "status": status,
                "algo": self.config.algo,
                "env_id": self.config.train.env_id,
                "seed": run.state.seed,
                "final_eval": run.state.last_eval,
                "best_eval": run.state.best_eval,
                "steps": step,
                "episodes": run.state.episodes,
                "total_time_s": time.perf_counter() - self.clock_start,
            }
            write_summary(run.run_dir, summary)
            summaries.append(summary)
        return summaries


def _episode_stats(returns: list[float]) -> dict[str, float]:
    if not returns:
        return {"episode_return_mean": math.nan, "episode_return_last": math.nan}
    return {"episode_return_mean": float(np.mean(returns)), "episode_return_last": returns[-1]}
