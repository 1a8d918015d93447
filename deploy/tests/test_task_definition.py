"""deploy/ecs-task-definition.json must be what the stack deploys, and every variant of the
stack's task definition must hand the worker a configuration it can run with."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from cfn_template import (
    ACCOUNT,
    DOCKERFILE_PATH,
    REGION,
    TASK_DEFINITION_PATH,
    Stack,
    camel,
    load_template,
)

# The credential of each auth mode that rotates, and the variable that gives its secret instead
# (src/aws/secrets.rs): the worker reads it from Secrets Manager itself, at start, periodically and
# when the ticket system refuses it, so it is never injected by ECS (the worker refuses a
# variable and its _SECRET_ARN together).
ROTATING = {
    "JIRA_API_TOKEN": "JIRA_API_TOKEN_SECRET_ARN",
    "JIRA_PAT": "JIRA_PAT_SECRET_ARN",
    "SERVICENOW_PASSWORD": "SERVICENOW_PASSWORD_SECRET_ARN",
    "SERVICENOW_CLIENT_SECRET": "SERVICENOW_CLIENT_SECRET_SECRET_ARN",
}
# README "Configuration": what the worker reads. AWS_REGION is the SDK's, RUST_LOG the log filter.
PLAIN_SETTINGS = {
    "BRIDGE_QUEUE_URL", "BRIDGE_DLQ_URL", "BRIDGE_MAPPINGS", "BRIDGE_STORE", "BRIDGE_CONCURRENCY",
    "BRIDGE_HTTP_ADDR", "BRIDGE_SYNC_INTERVAL", "BRIDGE_SECRETS_REFRESH", "JIRA_URL", "JIRA_API_VERSION",
    "SERVICENOW_URL", "DETECTIVE_GRAPH_ARN", "AWS_REGION", "RUST_LOG", *ROTATING.values(),
}
# What ECS injects from the secrets at task start.
SECRET_SETTINGS = {
    "JIRA_EMAIL", "SERVICENOW_USERNAME", "SERVICENOW_CLIENT_ID", "JIRA_WEBHOOK_SECRET", "SERVICENOW_WEBHOOK_SECRET",
}
# The containers of the task definition, in the order the template lists them.
CONTAINER_ORDER = ["findings-bridge", "mappings", "metrics-collector"]
WORKER_GRACE_SECONDS = 25
FARGATE_MAX_STOP_TIMEOUT = 120

JIRA_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:findings-bridge/jira-AbCdEf"
SERVICENOW_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:findings-bridge/servicenow-GhIjKl"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/findings-bridge:1.0.0"

# The parameters deploy/ecs-task-definition.json corresponds to (deploy/README.md says so too).
EXAMPLE_PARAMETERS = dict(
    ImageUri=IMAGE,
    VpcId="vpc-0123456789abcdef0",
    SubnetIds="subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    JiraAuth="cloud",
    JiraUrl="https://example.atlassian.net",
    JiraSecretArn=JIRA_SECRET,
    ServiceNowAuth="basic",
    ServiceNowUrl="https://example.service-now.com",
    ServiceNowSecretArn=SERVICENOW_SECRET,
)


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def task_json() -> dict:
    with open(TASK_DEFINITION_PATH, encoding="utf-8") as f:
        return json.load(f)


def rendered_task_definition(template: dict, **parameters: str) -> dict:
    stack = Stack(template, **parameters)
    assert stack.rule_failures() == [], "these parameters would be rejected by the template's Rules"
    props = camel(stack.resource("TaskDefinition"))
    return _normalised(props)


def _normalised(task: dict) -> dict:
    """Order of environment and secrets entries carries no meaning."""
    task = json.loads(json.dumps(task))
    for container in task["containerDefinitions"]:
        for key in ("environment", "secrets"):
            if key in container:
                container[key] = sorted(container[key], key=lambda e: e["name"])
    return task


def main_container(task: dict) -> dict:
    (container,) = [c for c in task["containerDefinitions"] if c["name"] == "findings-bridge"]
    return container


def names(entries: list[dict]) -> set[str]:
    return {e["name"] for e in entries}


def test_task_definition_json_is_what_the_stack_deploys(template, task_json):
    expected = rendered_task_definition(template, **EXAMPLE_PARAMETERS)
    assert _normalised(task_json) == expected


def test_task_definition_json_has_no_secret_in_environment(task_json):
    container = main_container(task_json)
    leaked = names(container["environment"]) & SECRET_SETTINGS
    assert not leaked, f"secrets must come from `secrets`, never `environment`: {leaked}"
    for entry in container["environment"]:
        assert not re.search(r"(TOKEN|PASSWORD|SECRET|PAT)$", entry["name"]), entry["name"]
        if entry["name"].endswith("_SECRET_ARN"):
            # A reference, never a value: a Secrets Manager ARN with the key after #.
            assert re.fullmatch(r"arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+#[A-Z_]+", entry["value"])


VARIANTS = [
    variant
    for variant in itertools.product(
        ["none", "cloud", "datacenter"],  # JiraAuth
        ["none", "basic", "oauth"],  # ServiceNowAuth
        [False, True],  # webhooks through a load balancer
        [False, True],  # Detective graph
        [False, True],  # mappings from a config image
    )
    # no ticket system at all is rejected by the template's AtLeastOneTicketSystem rule
    if variant[:2] != ("none", "none")
]


def variant_parameters(jira, servicenow, webhooks, detective, mappings_image) -> dict:
    params = dict(ImageUri=IMAGE, VpcId="vpc-0123456789abcdef0", SubnetIds="subnet-0123456789abcdef0")
    params["JiraAuth"] = jira
    if jira != "none":
        params.update(JiraUrl="https://example.atlassian.net", JiraSecretArn=JIRA_SECRET)
    params["ServiceNowAuth"] = servicenow
    if servicenow != "none":
        params.update(ServiceNowUrl="https://example.service-now.com", ServiceNowSecretArn=SERVICENOW_SECRET)
    if webhooks:
        params.update(
            WebhookTargetGroupArn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/fb/0123456789abcdef",
            WebhookSourceSecurityGroupId="sg-0123456789abcdef0",
        )
    if detective:
        params["DetectiveGraphArn"] = f"arn:aws:detective:{REGION}:{ACCOUNT}:graph:0123456789abcdef0123456789abcdef"
    if mappings_image:
        params["MappingsImageUri"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/findings-bridge-mappings:abc1234"
    return params


@pytest.mark.parametrize("jira,servicenow,webhooks,detective,mappings_image", VARIANTS)
def test_every_variant_configures_the_worker_completely(template, jira, servicenow, webhooks, detective, mappings_image):
    task = rendered_task_definition(
        template, **variant_parameters(jira, servicenow, webhooks, detective, mappings_image)
    )
    container = main_container(task)
    env = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}

    assert set(env) <= PLAIN_SETTINGS, set(env) - PLAIN_SETTINGS
    assert set(secrets) <= SECRET_SETTINGS, set(secrets) - SECRET_SETTINGS
    assert not set(env) & set(secrets)
    for name, value_from in secrets.items():
        # JSON key named like the variable, latest version: ARN:KEY::
        assert value_from.endswith(f":{name}::"), value_from
        assert value_from.startswith(JIRA_SECRET if name.startswith("JIRA_") else SERVICENOW_SECRET)
    for name, arn_variable in ROTATING.items():
        assert not (name in env or name in secrets), f"{name} must come from {arn_variable} only"
    rotating = {name: env[arn] for name, arn in ROTATING.items() if arn in env}
    for name, value in rotating.items():
        # The same secret, the key named like the variable: ARN#KEY
        secret = JIRA_SECRET if name.startswith("JIRA_") else SERVICENOW_SECRET
        assert value == f"{secret}#{name}", value
    assert env["BRIDGE_SECRETS_REFRESH"] == "900"

    expected_secrets = set()
    expected_rotating = set()
    if jira == "cloud":
        expected_secrets |= {"JIRA_EMAIL"}
        expected_rotating |= {"JIRA_API_TOKEN"}
        assert env["JIRA_API_VERSION"] == "3"
    if jira == "datacenter":
        expected_rotating |= {"JIRA_PAT"}
        assert env["JIRA_API_VERSION"] == "2"
    if jira != "none":
        assert env["JIRA_URL"] == "https://example.atlassian.net"
    else:
        assert "JIRA_URL" not in env and "JIRA_API_VERSION" not in env
    if servicenow == "basic":
        expected_secrets |= {"SERVICENOW_USERNAME"}
        expected_rotating |= {"SERVICENOW_PASSWORD"}
    if servicenow == "oauth":
        expected_secrets |= {"SERVICENOW_CLIENT_ID"}
        expected_rotating |= {"SERVICENOW_CLIENT_SECRET"}
    if servicenow != "none":
        assert env["SERVICENOW_URL"] == "https://example.service-now.com"
    else:
        assert "SERVICENOW_URL" not in env
    if webhooks and jira != "none":
        expected_secrets.add("JIRA_WEBHOOK_SECRET")
    if webhooks and servicenow != "none":
        expected_secrets.add("SERVICENOW_WEBHOOK_SECRET")
    assert set(secrets) == expected_secrets
    assert set(rotating) == expected_rotating
    assert ("DETECTIVE_GRAPH_ARN" in env) == detective

    assert env["BRIDGE_STORE"] == "dynamodb:findings-bridge-dedup"
    assert env["BRIDGE_HTTP_ADDR"].endswith(":8080")
    assert container["portMappings"][0]["containerPort"] == 8080
    assert WORKER_GRACE_SECONDS < container["stopTimeout"] <= FARGATE_MAX_STOP_TIMEOUT

    mounts = {m["containerPath"]: m for m in container["mountPoints"]}
    if mappings_image:
        assert env["BRIDGE_MAPPINGS"] in mounts and mounts[env["BRIDGE_MAPPINGS"]]["readOnly"] is True
        assert container["dependsOn"] == [{"containerName": "mappings", "condition": "SUCCESS"}]
        (sidecar,) = [c for c in task["containerDefinitions"] if c["name"] == "mappings"]
        assert sidecar["essential"] is False
        assert {m["sourceVolume"] for m in sidecar["mountPoints"]} == {mounts[env["BRIDGE_MAPPINGS"]]["sourceVolume"]}
    else:
        assert env["BRIDGE_MAPPINGS"] == "/etc/findings-bridge/mappings"
        assert "dependsOn" not in container
    # The worker, the metrics sidecar (on by default), and the mappings copier when it is used.
    expected_containers = {"findings-bridge", "metrics-collector"} | ({"mappings"} if mappings_image else set())
    assert [c["name"] for c in task["containerDefinitions"]] == sorted(expected_containers, key=CONTAINER_ORDER.index)


def task_role_statements(stack: Stack) -> list[dict]:
    return [s for policy in stack.resource("TaskRole")["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("jira,servicenow,webhooks,detective,mappings_image", VARIANTS)
def test_the_task_role_reads_exactly_the_secrets_the_worker_is_pointed_at(
    template, jira, servicenow, webhooks, detective, mappings_image
):
    """The worker reads every *_SECRET_ARN with the task role: each referenced secret must be
    readable, and nothing else (no wildcard, no secret of a ticket system that is off)."""
    params = variant_parameters(jira, servicenow, webhooks, detective, mappings_image)
    stack = Stack(template, **params)
    env = {e["name"]: e["value"] for e in main_container(rendered_task_definition(template, **params))["environment"]}
    referenced = {env[arn].split("#", 1)[0] for arn in ROTATING.values() if arn in env}
    reads = [s for s in task_role_statements(stack) if "secretsmanager:GetSecretValue" in _list(s["Action"])]
    readable = {r for s in reads for r in _list(s["Resource"])}
    assert readable == referenced
    assert not any("*" in r for r in readable)
    assert not any(a.startswith("kms:") for s in task_role_statements(stack) for a in _list(s["Action"])), \
        "no KMS permission without a customer managed key"


SECRETS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0123abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize("jira,servicenow", [("cloud", "none"), ("none", "oauth"), ("datacenter", "basic")])
def test_with_a_secrets_key_the_task_role_decrypts_only_those_secrets(template, jira, servicenow):
    params = {**variant_parameters(jira, servicenow, False, False, False), "SecretsKmsKeyArn": SECRETS_KEY}
    stack = Stack(template, **params)
    env = {e["name"]: e["value"] for e in main_container(rendered_task_definition(template, **params))["environment"]}
    referenced = sorted(env[arn].split("#", 1)[0] for arn in ROTATING.values() if arn in env)
    (decrypt,) = [s for s in task_role_statements(stack) if any(a.startswith("kms:") for a in _list(s["Action"]))]
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == SECRETS_KEY
    assert decrypt["Condition"] == {"StringEquals": {
        "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
        "kms:EncryptionContext:SecretARN": referenced,
    }}


def test_secrets_refresh_follows_its_parameter(template):
    env = {e["name"]: e["value"] for e in main_container(rendered_task_definition(
        template, **EXAMPLE_PARAMETERS, SecretsRefreshSeconds="0"))["environment"]}
    assert env["BRIDGE_SECRETS_REFRESH"] == "0"


def test_every_worker_variable_of_the_stack_is_documented():
    """The *_SECRET_ARN variables and BRIDGE_SECRETS_REFRESH are in README "Configuration" (the
    worker's own reference), spelled as the stack spells them."""
    readme = (TASK_DEFINITION_PATH.parent.parent / "README.md").read_text(encoding="utf-8")
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in ["BRIDGE_SECRETS_REFRESH", *ROTATING.values()]:
        assert f"`{name}`" in configuration, name


def test_stop_timeout_covers_the_worker_grace_period(task_json):
    assert WORKER_GRACE_SECONDS < main_container(task_json)["stopTimeout"] <= FARGATE_MAX_STOP_TIMEOUT


def test_queue_settings_match_the_worker(template):
    stack = Stack(template, **EXAMPLE_PARAMETERS)
    queue = stack.resource("FindingsQueue")
    dlq = stack.resource("DeadLetterQueue")
    assert queue["VisibilityTimeout"] >= 60, "the worker receives with 60 s and extends from there"
    assert queue["ReceiveMessageWaitTimeSeconds"] == 20
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    # A standard queue keeps the original enqueue time in the DLQ: the DLQ must keep messages longer.
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == stack.names["DeadLetterQueue"]["Arn"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == stack.params["MaxReceiveCount"]
    assert dlq["RedriveAllowPolicy"]["sourceQueueArnList"] == [stack.names["FindingsQueue"]["Arn"]]


def test_dedup_table_matches_the_store(template):
    table = Stack(template, **EXAMPLE_PARAMETERS).resource("DedupTable")
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_severity_prefilter_still_forwards_closing_updates(template):
    unfiltered = Stack(template, **EXAMPLE_PARAMETERS)
    for rule in ("AsffFindingsRule", "OcsfFindingsRule"):
        assert "detail" not in unfiltered.resource(rule)["EventPattern"]

    high = Stack(template, **EXAMPLE_PARAMETERS, MinimumSeverity="HIGH")
    asff = high.resource("AsffFindingsRule")["EventPattern"]
    assert asff["detail-type"] == ["Security Hub Findings - Imported"]
    alternatives = asff["detail"]["findings"]["$or"]
    assert {"Severity": {"Label": ["HIGH", "CRITICAL"]}} in alternatives
    assert {"Compliance": {"Status": ["PASSED"]}} in alternatives
    assert {"RecordState": ["ARCHIVED"]} in alternatives

    ocsf = high.resource("OcsfFindingsRule")["EventPattern"]
    assert ocsf["detail-type"] == ["Findings Imported V2"]
    alternatives = ocsf["detail"]["findings"]["$or"]
    assert {"severity_id": [{"numeric": [">=", 4, "<=", 6]}]} in alternatives
    assert {"status_id": [4, 5]} in alternatives
    assert {"compliance": {"status_id": [1]}} in alternatives


@pytest.mark.parametrize("formats,asff,ocsf", [("ASFF+OCSF", True, True), ("ASFF", True, False), ("OCSF", False, True)])
def test_queue_policy_admits_exactly_the_rules_that_exist(template, formats, asff, ocsf):
    stack = Stack(template, **EXAMPLE_PARAMETERS, FindingFormats=formats)
    assert (stack.resource("AsffFindingsRule") is not None) == asff
    assert (stack.resource("OcsfFindingsRule") is not None) == ocsf
    expected = [stack.names[r]["Arn"] for r, on in (("AsffFindingsRule", asff), ("OcsfFindingsRule", ocsf)) if on]
    statement = stack.resource("FindingsQueuePolicy")["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == expected


def dockerfile_instruction(keyword: str) -> str:
    text = DOCKERFILE_PATH.read_text(encoding="utf-8").replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]  # the last stage is the runtime image
    (line,) = [l for l in runtime.splitlines() if l.startswith(keyword + " ")]
    return line[len(keyword) + 1 :].strip()


def test_image_and_task_definition_agree(task_json):
    container = main_container(task_json)
    env = {e["name"]: e["value"] for e in container["environment"]}
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    assert json.loads(healthcheck.split("CMD", 1)[1].strip()) == container["healthCheck"]["command"][1:]
    assert json.loads(dockerfile_instruction("ENTRYPOINT"))[0] == container["healthCheck"]["command"][1]
    assert dockerfile_instruction("USER") == container["user"]
    assert f"BRIDGE_MAPPINGS={env['BRIDGE_MAPPINGS']}" in dockerfile_instruction("ENV")
    assert dockerfile_instruction("EXPOSE") == str(container["portMappings"][0]["containerPort"])


@pytest.mark.parametrize(
    "overrides,failure",
    [
        (dict(JiraUrl=""), "JiraUrl is required when JiraAuth is not none."),
        (dict(ServiceNowSecretArn=""), "ServiceNowSecretArn is required when ServiceNowAuth is not none."),
        (dict(JiraAuth="none", ServiceNowAuth="none"), "Configure Jira, ServiceNow or both."),
        (dict(TaskCpu="256", TaskMemory="4096"), "TaskCpu 256 takes TaskMemory 512, 1024 or 2048."),
        (dict(TaskCpu="2048", TaskMemory="1024"), "TaskCpu 2048 takes TaskMemory 4096 or 8192 here."),
        (
            dict(WebhookTargetGroupArn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/fb/0123456789abcdef"),
            "WebhookSourceSecurityGroupId is required with WebhookTargetGroupArn.",
        ),
    ],
)
def test_template_rules_reject_incomplete_parameters(template, overrides, failure):
    assert Stack(template, **EXAMPLE_PARAMETERS).rule_failures() == []
    assert Stack(template, **{**EXAMPLE_PARAMETERS, **overrides}).rule_failures() == [failure]
