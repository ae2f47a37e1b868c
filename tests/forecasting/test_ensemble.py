"""``--ensemble K``: K forecasters trained side by side, their forecasts averaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rnnkit import Forecaster
from rnnkit.models.forecaster import (
    ForecasterConfig,
    ForecasterEnsemble,
    SequenceForecaster,
    build_forecaster,
)

CONFIG = {"cell": "gru", "hidden": 8, "input_size": 2, "output_length": 3}


def _solo_models(k: int, **extra) -> list[SequenceForecaster]:
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(SequenceForecaster(ForecasterConfig(**CONFIG, **extra)))
    return models


def _ensemble_of(models: list[SequenceForecaster], **extra) -> ForecasterEnsemble:
    ensemble = build_forecaster(ForecasterConfig(**CONFIG, **extra, members=len(models)))
    assert isinstance(ensemble, ForecasterEnsemble)
    for member, model in zip(ensemble.members, models, strict=True):
        member.load_state_dict(model.state_dict())
    return ensemble


def test_one_member_is_the_plain_forecaster_and_bad_counts_are_refused():
    assert type(build_forecaster(ForecasterConfig(**CONFIG))) is SequenceForecaster
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="--ensemble: expected a positive number"):
            build_forecaster(ForecasterConfig(**CONFIG, members=bad))


def test_members_start_from_different_weights():
    torch.manual_seed(0)
    ensemble = build_forecaster(ForecasterConfig(**CONFIG, members=3))
    heads = [m.head.weight for m in ensemble.members]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])


def test_the_forecast_is_the_mean_of_the_members_forecasts():
    models = _solo_models(3)
    ensemble = _ensemble_of(models).eval()
    x = torch.randn(5, 7, 2)
    expected = sum(m.eval()(x)[0] for m in models) / 3
    mean, std = ensemble(x)
    torch.testing.assert_close(mean, expected)
    assert std is None


def test_probabilistic_members_combine_as_their_equal_weight_mixture():
    """Two members, means 0 and 2, standard deviations 1 and 3: the mixture's mean is 1
    and its variance (1 + 9) / 2 + (0 + 4) / 2 - 1 = 6."""
    ensemble = build_forecaster(ForecasterConfig(**CONFIG, probabilistic=True, members=2))
    for member, (mu, sd) in zip(ensemble.members, ((0.0, 1.0), (2.0, 3.0)), strict=True):
        member.forward = (lambda x, mu=mu, sd=sd: (torch.full((len(x), 3), mu),
                                                   torch.full((len(x), 3), sd)))
    mean, std = ensemble(torch.zeros(4, 5, 2))
    torch.testing.assert_close(mean, torch.ones(4, 3))
    torch.testing.assert_close(std, torch.full((4, 3), 6.0).sqrt())
    # and the sampled mixture agrees
    draw = torch.Generator().manual_seed(0)
    pick = torch.randint(0, 2, (200_000,), generator=draw).bool()
    samples = torch.where(pick, 2.0 + 3.0 * torch.randn(200_000, generator=draw),
                          torch.randn(200_000, generator=draw))
    assert abs(float(samples.std()) - 6 ** 0.5) < 0.02


def test_each_member_learns_alone_and_validation_scores_the_average():
    models = _solo_models(2)
    ensemble = _ensemble_of(models)
    x, y = torch.randn(6, 7, 2), torch.randn(6, 3)
    ensemble.loss(x, y).backward()
    for member, model in zip(ensemble.members, models, strict=True):
        model.zero_grad()
        model.loss(x, y).backward()
        for (name, p), q in zip(member.named_parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad / 2, msg=name)
    with torch.no_grad():
        average = (models[0](x)[0] + models[1](x)[0]) / 2
        torch.testing.assert_close(ensemble.score(x, y), nn.functional.mse_loss(average, y))
        assert not torch.allclose(ensemble.score(x, y), ensemble.loss(x, y))


def test_an_ensemble_run_trains_reloads_and_forecasts_the_same(tmp_path):
    t = np.arange(200)
    values = 5 + np.sin(2 * np.pi * t / 12) + 0.01 * t
    options = {"horizon": 6, "input_length": 24, "test_size": 24, "val_size": 12, "hidden": 8,
                   "epochs": 3, "batch_size": 16, "baselines": "naive", "seed": 0, "quiet": True}
    model = Forecaster(out=tmp_path / "ens", ensemble=3, **options).fit(values)
    config = json.loads((model.run_dir / "config.json").read_text())
    assert config["ensemble"] == 3
    assert isinstance(model._module.model, ForecasterEnsemble)
    assert len(model._module.model.members) == 3
    ahead = model.predict(6)
    again = Forecaster.from_run(model.run_dir).predict(6)
    np.testing.assert_allclose(again["forecast"], ahead["forecast"])
    solo = Forecaster(out=tmp_path / "solo", **options).fit(values)
    assert solo._module.model.config.members == 1
    assert sum(p.numel() for p in model._module.parameters()) == \
        3 * sum(p.numel() for p in solo._module.parameters())
    # exported without pickle and rebuilt: the same forecasts
    from rnnkit.export import export_run, load_safetensors

    export_run(model.run_dir, "safetensors", tmp_path / "ens.safetensors")
    rebuilt = load_safetensors(tmp_path / "ens.safetensors")
    assert isinstance(rebuilt, ForecasterEnsemble) and len(rebuilt.members) == 3
    x = torch.randn(4, 24, 1)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)[0], model._module.model.eval()(x)[0])
