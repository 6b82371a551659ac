import json

import pytest

from aaedetect.config import Options, defaults, epochs_for
from aaedetect.errors import OptionError


def test_defaults_are_valid_and_round_trip():
    opts = Options()
    assert Options.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
    assert defaults()["prior"] == "gaussian"


@pytest.mark.parametrize("name,value", [
    ("prior", "cauchy"), ("prior", "mixture:1"), ("prior", "mixture:999"), ("max_epochs", 0),
    ("batch_size", 2.5), ("lr", 0.0), ("lr", float("nan")), ("fpr", 1.0), ("fpr", 0),
    ("latent_weight", 11.0), ("latent_weight", -1), ("neighbor_weight", 10.5), ("neighbor_weight", -0.5), ("neighbor_rows", 0), ("neighbor_rows", 1.5), ("scaling", "minmax"), ("noise", -0.1), ("adv_weight", 1.0), ("dropout", -0.1), ("device", "tpu"),
    ("validation_fraction", 0.9), ("hidden_dims", (16,)), ("hidden_dims", (16, -2)),
    ("latent_dim", 0), ("latent_dim", "big"), ("random_state", -1), ("max_categories", 0),
    ("latent_signal", "magic"), ("max_epochs", True), ("max_epochs", "many"),
    ("recon_trim", -0.1), ("recon_trim", 0.5), ("recon_trim", float("nan")), ("recon_trim", "10%"),
    ("reference_trim", -0.01), ("reference_trim", 0.9), ("reference_trim", True), ("reference_trim", None),
    ("reference_cluster", -0.1), ("reference_cluster", 0.5), ("reference_cluster", True), ("reference_cluster", "auto"),
])
def test_bad_values_are_refused_with_the_option_named(name, value):
    with pytest.raises(OptionError, match=name):
        Options(**{name: value})


def test_list_like_options_are_normalised():
    opts = Options(categorical=["a", "b"], exclude="c", hidden_dims=[32, 16])
    assert opts.categorical == ("a", "b") and opts.exclude == ("c",) and opts.hidden_dims == (32, 16)


def test_column_both_categorical_and_excluded():
    with pytest.raises(OptionError, match="both"):
        Options(categorical=("a",), exclude=("a",))


def test_unknown_option_in_manifest():
    with pytest.raises(OptionError, match="unknown option 'nope'"):
        Options.from_dict({"nope": 1})


def test_mixture_components():
    assert Options(prior="mixture:5").mixture_components == 5
    assert Options().mixture_components == 0


@pytest.mark.parametrize("n_rows,epochs", [(1, 100), (25_000, 100), (25_001, 100), (50_000, 50),
                                           (178_534, 15), (250_000, 10), (10_000_000, 10)])
def test_auto_epochs_shrink_on_large_tables_but_not_below_ten(n_rows, epochs):
    assert epochs_for("auto", n_rows) == epochs


def test_explicit_epochs_are_kept_whatever_the_table():
    assert epochs_for(3, 10_000_000) == 3 and epochs_for(500, 10) == 500
