from pathlib import Path

import pytest

from humback.config import ConfigError, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(ROOT / "configs" / name)
    assert isinstance(cfg, RunConfig)


def test_paper_recipe_values():
    cfg = load_config(ROOT / "configs" / "paper.yaml")
    assert (cfg.train.lr, cfg.train.min_lr_ratio, cfg.train.weight_decay, cfg.train.dropout) == (
        1e-5,
        0.9,
        0.1,
        0.1,
    )
    assert cfg.iterations == 2 and cfg.curate.threshold == 4.0
    assert (cfg.augment.temperature, cfg.augment.top_p) == (0.7, 0.9)


def test_all_problems_reported_together(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("curate:\n  treshold: 4\n  method: vote\ntrain:\n  lr: fast\niterations: 0\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "curate.treshold: unknown key (accepted here: method" in msg and "threshold" in msg
    assert "curate.method" in msg and "'sample', 'greedy', 'mean-of-k' or 'expected'" in msg
    assert "train.lr" in msg and "'fast'" in msg
    assert "iterations" in msg and "greater than or equal to 1" in msg
    assert str(bad) in msg


def test_impossible_combination():
    with pytest.raises(ConfigError, match="min_chars"):
        load_config(None, ["segment.min_chars=5000", "segment.max_chars=3000"])
    with pytest.raises(ConfigError, match="max_new_tokens must be at least 1"):
        load_config(None, ["curate.method=sample", "curate.max_new_tokens=0"])


def test_set_overrides_parse_yaml_values():
    cfg = load_config(
        ROOT / "configs" / "demo.yaml",
        ["curate.threshold=4.5", "model=Qwen/Qwen2.5-0.5B", "segment.max_segments=null", "train.tags=false"],
    )
    assert cfg.curate.threshold == 4.5 and cfg.model == "Qwen/Qwen2.5-0.5B"
    assert cfg.segment.max_segments is None and cfg.train.tags is False


def test_set_malformed_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["curate.threshold"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
