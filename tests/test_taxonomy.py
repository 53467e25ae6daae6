"""Taxonomy files: the format and its checks, the built-in one as the default, and a model
trained on its own labels using them everywhere: card, `taxonomy show`, the LLM's requests
and answers (against the fake Gemini server), priority and metric labels."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketclf.cli import app
from ticketclf.errors import ConfigError
from ticketclf.priority import PriorityRules
from ticketclf.runner import RunReport
from ticketclf.schema import CATEGORIES, PRIORITIES, SENTIMENTS
from ticketclf.taxonomy import BUILTIN, DEFAULT_TAXONOMY, Taxonomy

from .conftest import write_csv
from .fake_gemini import answer_body

CUSTOM = """\
business = "a small electricity supplier"

[category]
"Money" = "bills, charges, payments, refunds, fees"
"Leaving" = "cancelling, switching provider, closing the account"
"Other" = "anything else: questions, thanks, feedback"

[sentiment]
"Happy" = "pleased or grateful"
"Unhappy" = "annoyed, angry, threatening to leave"

[priority]
default = "LOW"

[priority.cues]
outage = ["power cut", "no electricity", "Blackout"]

[[priority.rules]]
cue = "outage"
priority = "URGENT"

[[priority.rules]]
category = ["Leaving"]
sentiment = ["Unhappy"]
priority = "HIGH"

[[priority.rules]]
sentiment = "Unhappy"
priority = "MEDIUM"
"""
BUILT_IN_LABELS = (*CATEGORIES, *SENTIMENTS)

MONEY = ["I was charged twice on my March bill", "please refund the late payment fee",
         "why did the direct payment go out early", "the fee on my last bill is wrong",
         "my payment was taken but the bill says unpaid", "can I get a refund for the overcharge"]
LEAVING = ["I want to close my account and switch supplier", "please cancel my contract",
           "I am moving to another supplier next month", "how do I end my contract early",
           "close the account, I am switching away", "cancel everything, I am leaving you"]
OTHER = ["what are your opening hours", "who do I talk to about a smart meter question",
         "is there an app for reading the meter", "thanks for the visit last week",
         "do you have a newsletter", "where can I read about your green tariff"]
HAPPY = "thank you, lovely service as always"
UNHAPPY = "this is ridiculous and I am fed up"


def custom_rows() -> list[list[str]]:
    """36 labelled tickets: each category text twice, once happy and once unhappy."""
    return [[f"{text}, {tail}", category, sentiment]
            for category, texts in (("Money", MONEY), ("Leaving", LEAVING), ("Other", OTHER))
            for text in texts
            for tail, sentiment in ((HAPPY, "Happy"), (UNHAPPY, "Unhappy"))]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the taxonomy file, a model trained with it)."""
    root = tmp_path_factory.mktemp("custom")
    taxonomy = root / "taxonomy.toml"
    taxonomy.write_text(CUSTOM, encoding="utf-8")
    data = write_csv(root / "train.csv", ["text", "category", "sentiment"], custom_rows())
    r = invoke("train", data, "--taxonomy", taxonomy, "-o", root / "model", "--json")
    assert r.exit_code == 0, r.output
    return taxonomy, root / "model"


# --- the format -------------------------------------------------------------------------

def test_the_built_in_file_is_the_default_with_the_contract_labels():
    assert Taxonomy.load(Path(str(BUILTIN))) == DEFAULT_TAXONOMY
    assert DEFAULT_TAXONOMY.labels("category") == CATEGORIES
    assert DEFAULT_TAXONOMY.labels("sentiment") == SENTIMENTS
    assert DEFAULT_TAXONOMY.priority.levels == PRIORITIES
    assert "telecom" in DEFAULT_TAXONOMY.business


@pytest.mark.parametrize("taxonomy", [DEFAULT_TAXONOMY, Taxonomy.parse(CUSTOM, "custom")],
                         ids=["built-in", "custom"])
def test_to_toml_reads_back_as_the_same_taxonomy(taxonomy):
    again = Taxonomy.parse(taxonomy.to_toml(), "again")
    assert again == taxonomy
    assert again.hash == taxonomy.hash


def test_awkward_labels_and_cues_survive_the_toml_round_trip():
    t = Taxonomy({"category": {"Port out": 'says "leave"', "Bill's": "a\\b"},
                  "sentiment": {"Happy": "", "Sad": "x"}}, "biz",
                 PriorityRules.from_dict({"cues": {"q": r"it's \d+'", "w": ["a\\b", "c'd"]},
                                          "rules": [{"cue": "q", "priority": "HIGH"}]}))
    assert Taxonomy.parse(t.to_toml(), "again") == t


def test_the_hash_changes_with_a_description_or_a_priority_rule():
    base = Taxonomy.parse(CUSTOM, "a")
    assert Taxonomy.parse(CUSTOM.replace("pleased or grateful", "pleased"), "b").hash != base.hash
    assert Taxonomy.parse(CUSTOM.replace('priority = "MEDIUM"', 'priority = "HIGH"'),
                          "c").hash != base.hash


def test_word_cues_match_whole_words_in_any_case_and_rules_go_in_order():
    priority = Taxonomy.parse(CUSTOM, "custom").priority.priority
    happy_money = {"category": "Money", "sentiment": "Happy"}
    assert priority(happy_money, "total BLACKOUT on our street") == "URGENT"
    assert priority(happy_money, "the blackouts were fine") == "LOW"  # a whole word only
    assert priority({"category": "Leaving", "sentiment": "Unhappy"}, "bye") == "HIGH"
    assert priority({"category": "Money", "sentiment": "Unhappy"}, "bill") == "MEDIUM"
    assert priority(happy_money, "bill") == "LOW"


BAD = {
    "not TOML": ("[category\n", "not valid TOML"),
    "an empty head": (CUSTOM.replace('"Other" = "anything else: questions, thanks, feedback"\n',
                                     "").replace('"Money" = "bills, charges, payments, '
                                                 'refunds, fees"\n', ""),
                      "[category] needs at least two labels, has 1"),
    "a duplicate label": (CUSTOM.replace('"Other" =', '"Money" ='), "not valid TOML"),
    "labels differing only in case": (CUSTOM.replace('"Other" =', '"MONEY" ='),
                                      "'Money' and 'MONEY' differ only in case"),
    "a misspelt head": (CUSTOM.replace("[sentiment]", "[sentimnet]"), "unknown key(s) sentimnet"),
    "a missing head": (CUSTOM.split("[sentiment]")[0], "no [sentiment] table"),
    "UNKNOWN as a category": (CUSTOM.replace('"Other" =', '"Unknown" ='), "UNKNOWN is the"),
    "a label that reads as a formula": (CUSTOM.replace('"Other" =', '"=Other" ='),
                                        "label '=Other' in [category]"),
    "a bad regex": (CUSTOM.replace('outage = ["power cut", "no electricity", "Blackout"]',
                                   "outage = '(power cut'"),
                    "priority cue 'outage' is not a valid regular expression"),
    "an upper-case regex": (CUSTOM.replace('outage = ["power cut", "no electricity", "Blackout"]',
                                           "outage = 'Power cut'"), "write it in lower case"),
    "a rule's label the heads lack": (CUSTOM.replace('category = ["Leaving"]',
                                                     'category = ["Leaving", "Moving"]'),
                                      "names category label(s) Moving, which [category] lacks"),
    "a level not in the list": (CUSTOM.replace('priority = "HIGH"', 'priority = "CRITICAL"'),
                                "priority 'CRITICAL' is not one of the levels"),
    "an unknown cue": (CUSTOM.replace('cue = "outage"', 'cue = "outages"'),
                       "names the cue 'outages', which [priority.cues] lacks"),
    "a rule without conditions": (CUSTOM + '\n[[priority.rules]]\npriority = "LOW"\n',
                                  "priority rule 4 has no condition"),
    "a description that is not text": (CUSTOM.replace('"pleased or grateful"', "3"),
                                       "the description of 'Happy' in [sentiment] must be a "
                                       "string"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_taxonomy_file_is_a_one_line_configuration_error_naming_file_and_problem(
        case, tmp_path):
    text, problem = BAD[case]
    path = tmp_path / "mine.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        Taxonomy.load(path)
    assert problem in raised.value.message
    r = invoke("taxonomy", "show", "--file", path)
    assert r.exit_code == 78, r.output
    assert f"taxonomy {path}: " in r.stderr and problem in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_taxonomy_file_is_a_configuration_error(tmp_path, cli):
    r = cli("train", tmp_path / "data.csv", "--taxonomy", tmp_path / "nope.toml",
            "-o", tmp_path / "m")
    assert r.code == 78, r
    assert "nope.toml: cannot be read" in r.stderr


def test_any_labels_keeps_built_in_descriptions_and_the_rules_that_still_apply():
    t = Taxonomy.from_labels({"category": {"BILLING", "NETWORK", "Roaming"}})
    assert t.heads["category"] == {"BILLING": DEFAULT_TAXONOMY.heads["category"]["BILLING"],
                                   "NETWORK": DEFAULT_TAXONOMY.heads["category"]["NETWORK"],
                                   "Roaming": ""}
    assert t.labels("sentiment") == SENTIMENTS  # a head without labels keeps the built-in ones
    # the same priority as the built-in rules for every ticket such a model can label
    for category, sentiment, text in itertools.product(
            t.labels("category"), SENTIMENTS, ["fine", "urgent please", "call 999", ""]):
        labels = {"category": category, "sentiment": sentiment}
        assert t.priority.priority(labels, text) == \
            DEFAULT_TAXONOMY.priority.priority(labels, text)


# --- a model on its own labels ----------------------------------------------------------

def test_the_card_carries_the_taxonomy_and_taxonomy_show_prints_it(custom):
    taxonomy_file, model = custom
    expected = Taxonomy.load(taxonomy_file)
    card = json.loads((model / "card.json").read_text())
    assert card["taxonomy"] == {"hash": expected.hash, "definition": expected.as_dict()}
    r = invoke("taxonomy", "show", "--model", model)
    assert r.exit_code == 0, r.output
    assert "a small electricity supplier" in r.stdout
    assert "Leaving  cancelling, switching provider, closing the account" in r.stdout
    assert not any(label in r.stdout for label in BUILT_IN_LABELS)
    r = invoke("taxonomy", "show", "--model", model, "--toml")
    assert Taxonomy.parse(r.stdout, "shown") == expected


def test_a_model_without_a_taxonomy_in_its_card_has_the_built_in_one(model_dir):
    r = invoke("taxonomy", "show", "--model", model_dir, "--toml")
    assert r.exit_code == 0, r.output
    assert Taxonomy.parse(r.stdout, "shown") == DEFAULT_TAXONOMY


def test_a_card_whose_taxonomy_was_edited_is_refused(custom, tmp_path):
    model = shutil.copytree(custom[1], tmp_path / "model")
    card = json.loads((model / "card.json").read_text())
    card["taxonomy"]["definition"]["category"]["Money"] = "anything"
    (model / "card.json").write_text(json.dumps(card))
    r = invoke("taxonomy", "show", "--model", model)
    assert r.exit_code == 78, r.output


def test_labels_missing_from_the_taxonomy_file_are_a_data_error_naming_them(custom, tmp_path,
                                                                           cli):
    rows = [*custom_rows(), ["my meter is broken", "Meter", "Unhappy"],
            ["meter reading wrong", "Meter", "Sad"]]
    data = write_csv(tmp_path / "train.csv", ["text", "category", "sentiment"], rows)
    r = cli("train", data, "--taxonomy", custom[0], "-o", tmp_path / "m")
    assert r.code == 65, r
    assert "labels missing from the taxonomy" in r.stderr and "Meter" in r.stderr
    assert str(custom[0]) in r.stderr
    assert not (tmp_path / "m").exists()


def test_any_labels_with_a_taxonomy_file_is_a_usage_error(custom, tmp_path, cli):
    data = write_csv(tmp_path / "train.csv", ["text", "category", "sentiment"], custom_rows())
    r = cli("train", data, "--taxonomy", custom[0], "--any-labels", "-o", tmp_path / "m")
    assert r.code == 2, r
    assert "drop --any-labels" in r.stderr


def _tickets(tmp_path: Path) -> Path:
    texts = ["there is a power cut on our street", "refund my fee, this is ridiculous",
             "cancel my contract, I am fed up", "thanks for the visit"]
    return write_csv(tmp_path / "tickets.csv", ["ticket_id", "text"],
                     [[f"T-{i}", t] for i, t in enumerate(texts)])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_llm_is_asked_and_answers_in_the_models_own_labels_only(custom, tmp_path, cli,
                                                                   gemini_env):
    _, model = custom
    answers = {"power": ("Other", "Unhappy"), "refund": ("Money", "Unhappy"),
               "cancel": ("Leaving", "Unhappy"), "thanks": ("Other", "Happy")}
    gemini_env.answer_for = lambda text: answer_body(
        *next(a for word, a in answers.items() if word in text.lower()), 0.95)
    tickets, out = _tickets(tmp_path), tmp_path / "out.csv"
    r = cli("classify", tickets, "-o", out, "--model", model, "--llm", "--llm-threshold",
            "1.0", "--quiet", "--workers", "1")
    assert r.code == 0, r
    assert gemini_env.count == 4
    for seen in gemini_env.requests:
        system = seen.body["systemInstruction"]["parts"][0]["text"]
        enum = seen.body["generationConfig"]["responseJsonSchema"]["properties"]
        assert enum["category"]["enum"] == ["Money", "Leaving", "Other", "UNKNOWN"]
        assert enum["sentiment"]["enum"] == ["Happy", "Unhappy"]
        assert "- Leaving: cancelling, switching provider, closing the account" in system
        assert "- Unhappy: annoyed, angry, threatening to leave" in system
        assert "a small electricity supplier" in system
        # [ACCOUNT] is a redaction placeholder the prompt explains, not the built-in label
        request = seen.raw.decode().replace("[ACCOUNT]", "")
        assert not any(label in request for label in BUILT_IN_LABELS), request
    rows = _rows(out)
    assert [(row["category"], row["sentiment"], row["priority"], row["decided_by"])
            for row in rows] == [("Other", "Unhappy", "URGENT", "llm"),
                                 ("Money", "Unhappy", "MEDIUM", "llm"),
                                 ("Leaving", "Unhappy", "HIGH", "llm"),
                                 ("Other", "Happy", "LOW", "llm")]
    r = cli("classify", tickets, "-o", tmp_path / "again.csv", "--model", model, "--llm",
            "--llm-threshold", "1.0", "--quiet", "--workers", "1")
    assert r.code == 0, r
    assert gemini_env.count == 4  # the rerun is answered from the cache
    assert [row["category"] for row in _rows(tmp_path / "again.csv")] == \
        [row["category"] for row in rows]


def test_an_llm_answer_in_a_built_in_label_is_rejected(custom, tmp_path, cli, gemini_env):
    gemini_env.answer_for = lambda _text: answer_body("BILLING", "NEGATIVE", 0.99)
    out = tmp_path / "out.csv"
    r = cli("classify", _tickets(tmp_path), "-o", out, "--model", custom[1], "--llm",
            "--llm-threshold", "1.0", "--quiet", "--workers", "1", "--no-cache")
    assert r.code == 0, r
    assert gemini_env.count >= 4
    rows = _rows(out)
    assert {row["decided_by"] for row in rows} == {"model"}
    assert all(row["needs_review"] == "true" for row in rows)
    assert {row["category"] for row in rows} <= {"Money", "Leaving", "Other"}


def test_metrics_carry_the_runs_taxonomys_label_values():
    from ticketclf.metrics import RunCollector

    report = RunReport(taxonomy=Taxonomy.parse(CUSTOM, "custom"))
    families = {f.name: f.samples for f in RunCollector(report, ended_at=0.0).collect()}
    for head, values in (("category", {"Money", "Leaving", "Other"}),
                         ("sentiment", {"Happy", "Unhappy"}), ("priority", set(PRIORITIES))):
        samples = families[f"ticketclf_last_run_{head}_rows"]
        assert {s.labels[head] for s in samples} == values
        assert all(s.value == 0 for s in samples)


def test_predict_takes_priority_from_the_models_own_rules(custom, cli):
    r = cli("predict", "--json", "--model", custom[1], "we have had a power cut since noon")
    assert r.code == 0, r
    answer = json.loads(r.stdout)
    assert answer["priority"] == "URGENT"  # the file's outage cue; the built-in rules lack it
    assert {a["label"] for a in answer["heads"]["category"]} <= {"Money", "Leaving", "Other"}


def test_evaluate_with_the_llm_asks_in_the_models_own_labels(custom, tmp_path, cli, gemini_env):
    gemini_env.answer_for = lambda _text: answer_body("Money", "Unhappy", 0.9)
    data = write_csv(tmp_path / "held_out.csv", ["text", "category", "sentiment"],
                     custom_rows()[:6])
    r = cli("evaluate", data, "--model", custom[1], "--llm", "--llm-threshold", "1.0", "--json")
    assert r.code == 0, r
    assert gemini_env.count == 6
    enum = gemini_env.requests[0].body["generationConfig"]["responseJsonSchema"]["properties"]
    assert enum["category"]["enum"] == ["Money", "Leaving", "Other", "UNKNOWN"]
    assert json.loads(r.stdout)["hybrid"]["decided_by_llm"] == 6
