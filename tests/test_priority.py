"""The priority rule table, one rule per test."""

import pytest

from ticketclf.priority import priority_for


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
    assert priority_for(category, sentiment, text) == expected
