import dataclasses

import pytest

from qscore.config import (
    PRESETS,
    ConfigError,
    OffPolicyConfig,
    QSMConfig,
    RunConfig,
    SACConfig,
    TD3Config,
    TrainConfig,
    field_doc,
    make_config,
)


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


def test_shared_fields_are_declared_once_and_documented_there():
    shared = {f.name for f in dataclasses.fields(OffPolicyConfig)}
    assert {"actor_hidden", "critic_hidden", "actor_lr", "tau", "batch_size", "utd"} <= shared
    assert not shared & set(SACConfig.__annotations__)
    assert not shared & set(TD3Config.__annotations__)
    assert shared & set(QSMConfig.__annotations__) == {"actor_hidden", "critic_hidden"}
    assert QSMConfig().actor_hidden == (512, 512) and SACConfig().actor_hidden == (256, 256)
    for cls in (QSMConfig, SACConfig, TD3Config):
        assert field_doc(cls, "actor_hidden") == field_doc(OffPolicyConfig, "actor_hidden") != ""
        assert all(field_doc(cls, f.name) for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (QSMConfig(best_of_n_explore=0), "best_of_n_explore must be >= 1"),
        (QSMConfig(sampling_temperature=-1.0), "sampling_temperature must be >= 0"),
        (SACConfig(init_temperature=0.0), "init_temperature must be > 0"),
        (SACConfig(temperature_lr=0.0), "temperature_lr must be > 0"),
        (TD3Config(policy_delay=0), "policy_delay must be >= 1"),
        (TD3Config(tau=0.0), "tau must be in"),
        (OffPolicyConfig(utd=0), "utd must be >= 1"),
        (TrainConfig(online_steps=5), "online_steps continues an offline run"),
    ],
)
def test_each_config_checks_its_own_fields(config, message):
    with pytest.raises(ConfigError, match=message):
        config.check()


def test_presets_other_than_paper_are_explicit():
    for algo, presets in PRESETS.items():
        assert presets["paper"] == {}  # the config classes' defaults are the papers' settings
        assert all(overrides for name, overrides in presets.items() if name != "paper"), algo
    for algo in ("sac", "td3"):  # their papers already use the 2x256 networks of ``fast``
        assert make_config("fast", algo=algo).agent == make_config("paper", algo=algo).agent
