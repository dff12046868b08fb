"""Triggers, queues and the grants they need: the paths a file and a result take."""

from __future__ import annotations

import tfconfig

PUBSUB_AGENT = {"${local.pubsub_service_agent_member}", "${var.pubsub_service_agent_member}"}
INVOKER_EMAILS = {"${google_service_account.invoker.email}", "${google_service_account.sink_invoker.email}"}


def _push_subscriptions(configurations) -> list[tuple[tfconfig.Configuration, tfconfig.Resource]]:
    found = []
    for configuration in configurations:
        for subscription in configuration.resources_of_type("google_pubsub_subscription"):
            if tfconfig.blocks(subscription.body, "push_config"):
                found.append((configuration, subscription))
    return found


def _agent_grants(configuration, resource_type: str, role: str, attribute: str) -> set[str]:
    """Return the `attribute` values of the Pub/Sub service agent's grants of `role`."""
    return {
        grant.body[attribute]
        for grant in configuration.resources_of_type(resource_type)
        if grant.body["role"] == role and grant.body["member"] in PUBSUB_AGENT
    }


def test_notification_sends_incoming_objects(partner):
    notification = partner.resource("google_storage_notification", "incoming")
    assert notification.body["event_types"] == ["OBJECT_FINALIZE"]
    assert notification.body["object_name_prefix"] == "${local.input_prefix}"
    assert notification.body["payload_format"] == "JSON_API_V1"
    assert notification.body["topic"] == "${google_pubsub_topic.incoming.id}"
    assert notification.body["depends_on"] == ["${google_pubsub_topic_iam_member.storage_publishes_incoming}"]


def test_sender_subscription_waits_600_seconds(partner):
    subscription = partner.resource("google_pubsub_subscription", "sender")
    assert subscription.body["ack_deadline_seconds"] == 600
    push = tfconfig.single_block(subscription.body, "push_config")
    assert push["push_endpoint"] == "${google_cloud_run_v2_service.sender[0].uri}/"


def test_push_subscription_settings(configurations):
    subscriptions = _push_subscriptions(configurations)
    assert sorted(s.address for _, s in subscriptions) == [
        "google_pubsub_subscription.results_sink",
        "google_pubsub_subscription.sender",
    ]
    for configuration, subscription in subscriptions:
        push = tfconfig.single_block(subscription.body, "push_config")
        token = tfconfig.single_block(push, "oidc_token")
        assert token["service_account_email"] in INVOKER_EMAILS, subscription.address
        # Cloud Run accepts a token whose audience is the service URL.
        assert push["push_endpoint"] == token["audience"] + "/", subscription.address

        retry = tfconfig.single_block(subscription.body, "retry_policy")
        assert retry["minimum_backoff"] == "${var.push_min_backoff_secs}s"
        assert retry["maximum_backoff"] == "${var.push_max_backoff_secs}s"
        dead_letter = tfconfig.single_block(subscription.body, "dead_letter_policy")
        assert dead_letter["max_delivery_attempts"] == "${var.max_delivery_attempts}"
        assert tfconfig.single_block(subscription.body, "expiration_policy")["ttl"] == ""


def test_pubsub_agent_grants(configurations):
    for configuration, subscription in _push_subscriptions(configurations):
        dead_letter_topic = tfconfig.single_block(subscription.body, "dead_letter_policy")["dead_letter_topic"]
        topic_grants = _agent_grants(configuration, "google_pubsub_topic_iam_member", "roles/pubsub.publisher", "topic")
        assert dead_letter_topic.replace(".id}", ".name}") in topic_grants, subscription.address

        subscription_grants = _agent_grants(
            configuration, "google_pubsub_subscription_iam_member", "roles/pubsub.subscriber", "subscription"
        )
        assert "${%s[0].name}" % subscription.address in subscription_grants, subscription.address

        token_account = tfconfig.single_block(
            tfconfig.single_block(subscription.body, "push_config"), "oidc_token"
        )["service_account_email"]
        token_grants = _agent_grants(
            configuration,
            "google_service_account_iam_member",
            "roles/iam.serviceAccountTokenCreator",
            "service_account_id",
        )
        assert token_account.replace(".email}", ".name}") in token_grants, subscription.address


def test_dead_letter_topics_have_subscriptions(configurations):
    for configuration in configurations:
        dead_letter_topics = {
            "${%s.id}" % topic.address
            for topic in configuration.resources_of_type("google_pubsub_topic")
            if topic.name.endswith("dead_letter")
        }
        kept = {s.body["topic"] for s in configuration.resources_of_type("google_pubsub_subscription")}
        assert dead_letter_topics <= kept, f"{configuration.directory.name}: dead letters would be dropped"


def test_delivery_queue_applies_partner_policy(partner):
    queue = partner.resource("google_cloud_tasks_queue", "deliveries")
    rate_limits = tfconfig.single_block(queue.body, "rate_limits")
    assert rate_limits["max_dispatches_per_second"] == "${var.requests_per_second}"
    assert rate_limits["max_concurrent_dispatches"] == 1

    retry = tfconfig.single_block(queue.body, "retry_config")
    assert retry["max_attempts"] == "${1 + var.max_retries}"
    assert retry["min_backoff"] == "${var.retry_base_delay_secs}s"
    assert retry["max_doublings"] == "${local.max_doublings}"
    assert partner.locals["max_doublings"] == "${max(var.max_retries - 1, 0)}"


def test_sender_may_enqueue_tasks_as_invoker(partner):
    enqueuer = partner.resource("google_cloud_tasks_queue_iam_member", "sender_enqueuer")
    assert enqueuer.body["role"] == "roles/cloudtasks.enqueuer"
    assert enqueuer.body["member"] == "${google_service_account.sender.member}"

    acts_as = partner.resource("google_service_account_iam_member", "sender_acts_as_invoker")
    assert acts_as.body["role"] == "roles/iam.serviceAccountUser"
    assert acts_as.body["service_account_id"] == "${google_service_account.invoker.name}"
    assert acts_as.body["member"] == "${google_service_account.sender.member}"


def test_only_the_receiver_is_public(configurations):
    invokers = {}
    for configuration in configurations:
        for grant in configuration.resources_of_type("google_cloud_run_v2_service_iam_member"):
            assert grant.body["role"] == "roles/run.invoker"
            invokers[grant.body["name"]] = grant.body["member"]
    assert invokers == {
        "${google_cloud_run_v2_service.receiver[0].name}": "allUsers",
        "${google_cloud_run_v2_service.sender[0].name}": "${google_service_account.invoker.member}",
        "${google_cloud_run_v2_service.sink[0].name}": "${google_service_account.sink_invoker.member}",
    }


def test_ingress_is_internal_except_receiver(configurations):
    ingress = {}
    for configuration in configurations:
        for service in configuration.resources_of_type("google_cloud_run_v2_service"):
            ingress[service.name] = service.body["ingress"]
            assert tfconfig.single_block(service.body, "template")["scaling"][0]["min_instance_count"] == 0
    assert ingress == {
        "receiver": "INGRESS_TRAFFIC_ALL",
        "sender": "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "sink": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    }


def test_buckets_are_private_and_expire_objects(configurations):
    buckets = [b for c in configurations for b in c.resources_of_type("google_storage_bucket")]
    assert sorted(b.name for b in buckets) == ["archive", "input"]
    for bucket in buckets:
        assert bucket.body["uniform_bucket_level_access"] is True
        assert bucket.body["public_access_prevention"] == "enforced"
        assert tfconfig.single_block(bucket.body, "versioning")["enabled"] is False
        rule = tfconfig.single_block(bucket.body, "lifecycle_rule")
        assert tfconfig.single_block(rule, "action")["type"] == "Delete"
        assert tfconfig.single_block(rule, "condition")["age"].endswith("_retention_days}")
