"""deploy/k8s/overlays/in-cluster-llm: the LLM as a Service in the cluster. Ticket text has
no way out: no egress to the internet, only to the LLM's pods; the settings point the openai
backend at that Service; no Gemini key is mounted or needed."""

from __future__ import annotations

from urllib.parse import urlsplit

from .test_deploy import config_maps, documents, one, pod_templates

OVERLAY = "in-cluster-llm"


def test_egress_reaches_the_llm_service_and_nothing_on_the_internet():
    docs = documents(OVERLAY)
    egress = one(docs, "NetworkPolicy")["spec"]["egress"]
    peers = [peer for rule in egress for peer in rule["to"]]
    assert not [peer for peer in peers if "ipBlock" in peer], "an internet route is left"
    url = urlsplit(config_maps(docs)["ticketclf-settings"]["TICKETCLF_LLM_BASE_URL"])
    service, namespace = url.hostname.split(".")[:2]
    assert url.hostname.endswith(".svc.cluster.local")
    llm_rule = next(rule for rule in egress if any(
        peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": namespace}
        for peer in rule["to"]))
    assert llm_rule["ports"] == [{"protocol": "TCP", "port": url.port}]
    assert llm_rule["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": service}


def test_the_openai_backend_is_chosen_and_no_gemini_key_is_mounted():
    docs = documents(OVERLAY)
    settings = config_maps(docs)["ticketclf-settings"]
    assert settings["TICKETCLF_LLM_BACKEND"] == "openai" and settings["TICKETCLF_LLM_MODEL"]
    for _, pod in pod_templates(docs):
        assert not [v for v in pod["volumes"] if "secret" in v]
        (container,) = pod["containers"]
        assert not [e for e in container.get("env", []) if e["name"].startswith("GEMINI_")]
