import pytest

from qscore.config import ConfigError, QSMConfig, RunConfig, make_config


def test_paper_preset_is_the_authors_setting():
    agent = make_config("paper").agent
    assert agent == QSMConfig()
    assert (agent.num_diffusion_steps, agent.beta_schedule, agent.q_score_scale) == (5, "vp", 50.0)
    assert agent.actor_hidden == agent.critic_hidden == (512, 512)
    assert (agent.batch_size, agent.actor_lr, agent.discount, agent.tau) == (256, 3e-4, 0.99, 0.005)
    assert make_config("paper").train.warmup_steps == 10_000


def test_fast_preset_only_shrinks_the_networks():
    fast, paper = make_config("fast").agent, make_config("paper").agent
    assert fast.actor_hidden == fast.critic_hidden == (256, 256)
    assert fast.q_score_scale == paper.q_score_scale
    assert fast.num_diffusion_steps == paper.num_diffusion_steps


def test_round_trip_through_a_dict():
    config = make_config("fast", {"q_score_scale": 120.0}, {"env_id": "Pendulum-v1"})
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("agent", "train", "message"),
    [
        ({"num_diffusion_steps": 0}, {}, "num_diffusion_steps"),
        ({"actor_lr": -1e-3}, {}, "actor_lr"),
        ({"q_score_scale": float("nan")}, {}, "q_score_scale"),
        ({"batch_size": 512}, {"buffer_size": 100}, "batch_size .* larger than buffer_size"),
        ({"beta_schedule": "sigmoid"}, {}, "beta_schedule"),
        ({"n_step_fraction": 1.5}, {}, "n_step_fraction must be in"),
        ({"actor_hidden": ()}, {}, "actor_hidden"),
        ({"q_score_target": "clipped"}, {}, "q_score_target must be one of"),
        ({"q_score_temperature": 0.0}, {}, "q_score_temperature"),
        ({"q_score_actions": "buffer"}, {}, "q_score_actions must be one of"),
        ({"q_score_at": "middle"}, {}, "q_score_at must be one of"),
        ({"target_action_spread": 1.5}, {}, "target_action_spread must be in"),
        ({"target_action_spread": 0.2}, {}, "only the normalized q_score_targets"),
        (
            {"target_action_spread": 0.2, "q_score_target": "normalized", "spread_states": 999},
            {},
            "spread_states",
        ),
        (
            {
                "target_action_spread": 0.2,
                "q_score_target": "normalized",
                "q_score_temperature": 20,
            },
            {},
            "max_q_score_temperature",
        ),
        ({"best_of_n_eval": 0}, {}, "best_of_n_eval"),
        ({"best_of_n_target": 0}, {}, "best_of_n_target"),
        ({"td_disagreement_penalty": -1.5}, {}, "td_disagreement_penalty"),
        ({"linear_beta_end": 1.5}, {}, "linear_beta"),
        ({"discount": 1.5}, {}, "discount"),
        ({}, {"total_steps": 0}, "total_steps"),
        ({}, {"reward_scale": -1.0}, "reward_scale"),
        ({"no_such_field": 1}, {}, "unknown QSMConfig field"),
    ],
)
def test_invalid_values_name_the_field(agent, train, message):
    with pytest.raises(ConfigError, match=message):
        make_config("paper", agent, train)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        make_config("huge")
