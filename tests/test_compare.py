"""`ticketclf compare OLD NEW DATA`: what changes when a new model replaces the old one.

The shipped model is retrained often, so no test expects a given label: every expectation is
worked out from the two models' own predictions over the same texts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from scipy.spatial.distance import jensenshannon

from ticketclf.compare import compare_models
from ticketclf.io.readers import ReadOptions, TicketReader
from ticketclf.io.sources import open_source
from ticketclf.model import TicketModel, load_model
from ticketclf.model.train import TrainSpec, train
from ticketclf.schema import Ticket

from .conftest import ROOT, SAMPLES, write_csv

LABELLED = [
    ("my bill is £30 higher than last month, why?", "BILLING", "NEGATIVE"),
    ("you charged me twice for March, refund one please", "BILLING", "NEUTRAL"),
    ("no signal at all in my town since this morning", "NETWORK", "NEGATIVE"),
    ("calls keep dropping on the motorway", "NETWORK", ""),
    ("I want to cancel my contract and leave", "CANCELLATION", "CRITICAL"),
    ("please send me my port-out code", "CANCELLATION", ""),
    ("thanks, the engineer was brilliant", "GENERAL", "POSITIVE"),
    ("can't log in, password reset link expired", "ACCOUNT", "NEGATIVE"),
    ("router lights blinking red, wifi down", "TECHNICAL", "NEGATIVE"),
    ("I'd like to upgrade to the unlimited data plan", "PLAN", "NEUTRAL"),
]


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on two categories only: it must disagree with the shipped one."""
    corpus = ROOT / "data" / "telecom"
    out = tmp_path_factory.mktemp("models") / "two-categories"
    train(TrainSpec(files=[corpus / "billing.csv", corpus / "general.csv"], folds=0), out)
    return out


def tickets_of(path: Path) -> list[Ticket]:
    reader = TicketReader(open_source(str(path)), ReadOptions())
    try:
        return [t for batch in reader.batches() for t in batch.tickets]
    finally:
        reader.close()


def labels(model: TicketModel, texts: list[str], head: str) -> list[str]:
    return [p.label(head) for p in model.predict(texts)]


def labelled_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "labelled.csv", ["text", "category", "sentiment"],
                     [list(row) for row in LABELLED])


def test_a_model_compared_with_itself_agrees_on_every_ticket(model_dir):
    model = load_model(model_dir)
    result = compare_models(model, model, [str(SAMPLES / "tickets.csv")])
    assert result.rows == len(tickets_of(SAMPLES / "tickets.csv")) > 0
    assert result.agreement == 1.0 and result.changed == []
    for head in result.heads.values():
        assert head.agreement == 1.0
        assert all(m["shift"] == 0 for m in head.mix().values())


def test_changed_tickets_are_exactly_those_the_two_models_label_differently(model_dir,
                                                                            other_model):
    old, new = load_model(model_dir), load_model(other_model)
    tickets = tickets_of(SAMPLES / "tickets.csv")
    texts = [t.text for t in tickets]
    result = compare_models(old, new, [str(SAMPLES / "tickets.csv")], ReadOptions(batch_size=7))

    differs: set[str] = set()
    for name, head in result.heads.items():
        old_labels, new_labels = labels(old, texts, name), labels(new, texts, name)
        diff = {t.id for t, a, b in zip(tickets, old_labels, new_labels, strict=True) if a != b}
        differs |= diff
        assert head.agreement == pytest.approx(1 - len(diff) / len(texts))
        assert head.old_mix == Counter(old_labels) and head.new_mix == Counter(new_labels)
        mix = head.mix()
        assert sum(m["shift"] for m in mix.values()) == pytest.approx(0)
        assert sum(m["new"] for m in mix.values()) == len(texts)
    assert differs, "a model trained on two categories must disagree with the shipped one"
    assert {t.id for t in result.changed} == differs
    assert result.agreement == pytest.approx(1 - len(differs) / len(texts))
    for ticket in result.changed:
        assert ticket.changes and all(c.old != c.new for c in ticket.changes)
        assert all(0 <= c.old_confidence <= 1 and 0 <= c.new_confidence <= 1
                   for c in ticket.changes)


def test_metrics_are_side_by_side_where_the_data_has_labels_and_absent_otherwise(
        model_dir, other_model, tmp_path):
    old, new = load_model(model_dir), load_model(other_model)
    data = labelled_csv(tmp_path)
    result = compare_models(old, new, [str(data)])
    texts = [row[0] for row in LABELLED]
    for head, column in (("category", 1), ("sentiment", 2)):
        truth = [row[column] for row in LABELLED]
        kept = [i for i, y in enumerate(truth) if y]
        h = result.heads[head]
        for model, metrics in ((old, h.old_metrics), (new, h.new_metrics)):
            assert metrics is not None
            predicted = labels(model, [texts[i] for i in kept], head)
            right = sum(p == truth[i] for p, i in zip(predicted, kept, strict=True))
            assert metrics["n"] == len(kept)  # rows without this head's label are left out
            assert metrics["accuracy"] == pytest.approx(right / len(kept))

    unlabelled = compare_models(old, new, [str(SAMPLES / "tickets.csv")])
    assert all(h.old_metrics is None and h.new_metrics is None
               for h in unlabelled.heads.values())
    assert all("metrics" not in h for h in unlabelled.as_dict()["heads"].values())


def test_label_columns_can_be_named(model_dir, tmp_path):
    model = load_model(model_dir)
    data = write_csv(tmp_path / "renamed.csv", ["body", "true_category"],
                     [[text, category] for text, category, _ in LABELLED])
    result = compare_models(model, model, [str(data)], label_columns={"category": "true_category"})
    assert result.heads["category"].old_metrics is not None
    assert result.heads["sentiment"].old_metrics is None


def test_cli_json_lists_every_changed_ticket_and_counts_rejects(cli, model_dir, other_model,
                                                               tmp_path):
    data = write_csv(tmp_path / "t.csv", ["id", "text"],
                     [[f"T{i}", text] for i, (text, _, _) in enumerate(LABELLED)] + [["T99", " "]])
    r = cli("compare", model_dir, other_model, data, "--json")
    assert r.code == 0, r
    report = json.loads(r.stdout)
    assert report["rows"] == len(LABELLED) and report["rejected"] == 1
    assert report["changed"] == len(report["changed_tickets"]) > 0
    assert {t["id"] for t in report["changed_tickets"]} <= {f"T{i}" for i in range(len(LABELLED))}
    assert report["old_model"] == load_model(model_dir).version
    assert report["new_model"] == load_model(other_model).version


def test_cli_prints_agreement_mix_metrics_and_changed_tickets(cli, model_dir, other_model,
                                                              tmp_path):
    r = cli("compare", model_dir, other_model, labelled_csv(tmp_path), "--show", "3")
    assert r.code == 0, r
    for text in ("agreement", "shift", "macro-F1", "changed tickets (first 3)",
                 "drift from the training data", "category label divergence", "unseen words",
                 "unseen languages",
                 "unknown"):  # the new model's card has no per-class supports
        assert text in r.stdout


def test_cli_reads_jsonl_from_stdin(cli, model_dir):
    r = cli("compare", model_dir, model_dir, "-", "--input-format", "jsonl", "--json",
            input=(SAMPLES / "tickets.jsonl").read_text())
    assert r.code == 0, r
    assert json.loads(r.stdout)["agreement"] == 1.0


def test_drift_figures_are_each_models_own_over_the_same_tickets(model_dir, other_model):
    old, new = load_model(model_dir), load_model(other_model)
    texts = [t.text for t in tickets_of(SAMPLES / "tickets.csv")]
    report = compare_models(old, new, [str(SAMPLES / "tickets.csv")],
                            ReadOptions(batch_size=7)).as_dict()
    drift = report["drift"]
    card = old.card
    for head in ("category", "sentiment"):
        supports = {k: v["support"] for k, v in card["metrics"][head]["per_class"].items()}
        mix = Counter(labels(old, texts, head))
        keys = sorted(supports.keys() | mix.keys())
        expected = jensenshannon([mix[k] for k in keys], [supports.get(k, 0) for k in keys],
                                 base=2) ** 2
        assert drift["old"]["label_divergence"][head] == pytest.approx(expected)
        # trained with --folds 0: no per-class supports, so no prior to diverge from
        assert drift["new"]["label_divergence"][head] is None
        between = {k: report["heads"][head]["mix"][k] for k in report["heads"][head]["mix"]}
        keys = sorted(between)
        assert drift["label_divergence_between"][head] == pytest.approx(jensenshannon(
            [between[k]["old"] for k in keys], [between[k]["new"] for k in keys], base=2) ** 2)
        assert drift["label_divergence_between"][head] > 0
        for side in ("old", "new"):
            assert drift[side]["low_confidence_ratio"][head] == \
                report["heads"][head][f"{side}_uncertain_rate"]
    for side, model in (("old", old), ("new", new)):
        word = dict(model.vectorizer.transformer_list)["word"]
        tokens = [g for text in texts for g in word.build_analyzer()(text) if " " not in g]
        assert drift[side]["unseen_token_ratio"] == pytest.approx(
            sum(t not in word.vocabulary_ for t in tokens) / len(tokens))  # every ticket
    # the languages are the tickets' (one detection), the training languages each card's
    detected = [p.language for p in old.predict(texts)]
    for side, model in (("old", old), ("new", new)):
        if model.languages:
            unseen = sum(lang not in {"und", *model.languages} for lang in detected)
            assert drift[side]["unseen_language_ratio"] == pytest.approx(unseen / len(texts))
        else:  # the shipped card may predate the languages
            assert drift[side]["unseen_language_ratio"] is None
    assert new.languages, "a model trained today lists its training languages"
    # two categories of training text know fewer words than the whole corpus
    assert drift["new"]["unseen_token_ratio"] > drift["old"]["unseen_token_ratio"]


def test_a_model_compared_with_itself_has_no_divergence_between_the_two(model_dir):
    model = load_model(model_dir)
    drift = compare_models(model, model, [str(SAMPLES / "tickets.csv")]).as_dict()["drift"]
    assert drift["old"] == drift["new"]
    assert drift["label_divergence_between"] == {"category": 0, "sentiment": 0}


@pytest.mark.parametrize(("args", "code"), [
    (("{model}", "{model}", "missing.csv"), 66),
    (("{tmp}", "{model}", str(SAMPLES / "tickets.csv")), 78),
    (("{model}",), 2),
])
def test_cli_errors_exit_with_the_documented_code(cli, model_dir, tmp_path, args, code):
    filled = [a.format(model=model_dir, tmp=tmp_path) for a in args]
    r = cli("compare", *filled)
    assert r.code == code, r
