"""The built-in priority rule table (telecom.toml's [priority]), one rule per case."""

import pytest

from ticketclf.taxonomy import DEFAULT_TAXONOMY


@pytest.mark.parametrize(
    ("category", "sentiment", "text", "expected"),
    [
        ("NETWORK", "NEUTRAL", "my mum's care alarm can't call out since the outage", "URGENT"),
        ("TECHNICAL", "NEGATIVE", "can't dial 999 from the landline", "URGENT"),
        ("NETWORK", "CRITICAL", "third day without signal, going to Ofcom", "URGENT"),
        ("ACCOUNT", "CRITICAL", "someone opened lines in my name", "URGENT"),
        ("BILLING", "CRITICAL", "I will take you to court over this bill", "HIGH"),
        ("BILLING", "NEUTRAL", "urgent: payment taken twice", "HIGH"),
        ("NETWORK", "NEGATIVE", "slow again tonight", "HIGH"),
        ("BILLING", "NEGATIVE", "the bill went up again", "MEDIUM"),
        ("TECHNICAL", "NEUTRAL", "how do I set up voicemail", "MEDIUM"),
        ("PLAN", "NEUTRAL", "what roaming add-ons are there", "LOW"),
        ("GENERAL", "POSITIVE", "thanks to Sam in the Leeds shop", "LOW"),
    ],
)
def test_priority_rule_table(category, sentiment, text, expected):
    labels = {"category": category, "sentiment": sentiment}
    assert DEFAULT_TAXONOMY.priority.priority(labels, text) == expected
