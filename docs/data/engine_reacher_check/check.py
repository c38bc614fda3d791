import json
import sys

import jax

from qscore.agents import get_algorithm
from qscore.checkpoint import latest_checkpoint, load_agent
from qscore.config import make_config
from qscore.envs import make_env, space_dims
from qscore.evaluate import run_episodes
from qscore.training import EVAL_SEED_OFFSET, train_seeds

seeds = [int(s) for s in sys.argv[1].split(",")]
out = sys.argv[2]
loop = {
    "env_id": "Reacher-v4",
    "total_steps": 15_000,
    "warmup_steps": 2_000,
    "eval_every": 15_000,
    "eval_episodes": 10,
    "checkpoint_every": 0,
    "log_every": 1000,
}
config = make_config("robust", {}, loop)
train_seeds(config, seeds, out, progress=False)
env = make_env("Reacher-v4")
res = {}
for s in seeds:
    run = out if len(seeds) == 1 else f"{out}/seed_{s}"
    template = get_algorithm("qsm").create(config.agent, *space_dims(env), s)
    agent, step = load_agent(latest_checkpoint(run), template)
    r = run_episodes(agent, env, 200, 0 + EVAL_SEED_OFFSET, jax.random.PRNGKey(0))
    res[s] = float(r.mean())
    print(s, r.mean(), flush=True)
json.dump(res, open(out + ".json", "w"))
