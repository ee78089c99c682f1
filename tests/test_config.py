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


def test_docs_config_md_is_the_generated_reference():
    """docs/config.md is generated from the fields' descriptions; it must be regenerated when they change."""
    from pathlib import Path

    from humback.config.reference import reference

    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text(encoding="utf-8") == reference(), (
        "docs/config.md is stale: run `.venv/bin/python -m humback.config.reference > docs/config.md`"
    )


def test_every_config_field_says_what_it_does():
    from pydantic import BaseModel

    from humback.config import RunConfig
    from humback.config.engine import EngineKeys

    def sections(model):
        yield model
        for f in model.model_fields.values():
            inner = [a for a in (f.annotation, *getattr(f.annotation, "__args__", ())) if isinstance(a, type)]
            for a in inner:
                if issubclass(a, BaseModel) and a is not model:
                    yield from sections(a)

    missing = {
        f"{m.__name__}.{n}"
        for m in {*sections(RunConfig), EngineKeys}
        for n, f in m.model_fields.items()
        if not f.description
    }
    assert not missing, missing


def test_an_old_key_is_refused_with_its_new_place(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("seed: 3\ndata:\n  seed_source: demo\n  segment_lang: null\n  max_seed: 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(old)
    message = str(e.value)
    for said in (
        "random_seed: 3",
        "data.seed_source: moved to seed.source",
        "data.segment_lang: moved to segment.lang",
        "data.max_seed: moved to seed.max_pairs",
    ):
        assert said in message
    with pytest.raises(ConfigError, match="data.corpus: moved to segment.corpus"):
        load_config(None, ["data.corpus=pages/"])


def test_fingerprint_settings_leave_out_what_is_marked_speed_only():
    from humback.config import CurateConfig, TrainConfig, fingerprint_settings

    train = fingerprint_settings(TrainConfig())
    assert "micro_batch_size" not in train and "save_steps" not in train and "lr" in train
    assert fingerprint_settings(TrainConfig(micro_batch_size=1)) == train
    assert fingerprint_settings(TrainConfig(lr=3e-5)) != train
    scoring = CurateConfig().scoring_settings()
    assert "threshold" not in scoring and "near_duplicate_instructions" not in scoring and "method" in scoring
    assert "threshold" in fingerprint_settings(CurateConfig())
