"""The two optional layers of deploy/cloudformation.yaml: a customer managed KMS key (KmsKeyArn)
and private networking (VpcEndpoints). Both variants of each are rendered with the parameters a
deployment would pass, and checked for what they encrypt, whom they let in, and that the task
definition (and so deploy/ecs-task-definition.json) does not depend on them.
"""

from __future__ import annotations

import json
import re

import pytest

from cfn_template import (
    ACCOUNT,
    ENDPOINT_RESOURCES,
    KEY_POLICY_PATH,
    REGION,
    TASK_DEFINITION_PATH,
    Stack,
    load_template,
)
from test_iam import ALLOWED_ARN_WILDCARDS, violations
from test_task_definition import EXAMPLE_PARAMETERS, _normalised, rendered_task_definition

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WITH_KEY = {**EXAMPLE_PARAMETERS, "KmsKeyArn": KEY}
ROUTE_TABLES = "rtb-0123456789abcdef0,rtb-0fedcba9876543210"
CREATE_ENDPOINTS = {**EXAMPLE_PARAMETERS, "VpcEndpoints": "create", "RouteTableIds": ROUTE_TABLES}
EXISTING_ENDPOINTS = {**EXAMPLE_PARAMETERS, "VpcEndpoints": "existing", "EndpointSecurityGroupId": "sg-0aaaabbbbccccdddd"}

# In a key policy, Resource "*" means the key the policy is attached to, and nothing else.
KEY_POLICY_STAR_REASON = "A key policy belongs to one key; its Resource '*' is that key and no other."

# AWS services the tasks call from their network interface, by IAM service prefix, and the
# endpoints (com.amazonaws.<region>.<name>) that carry those calls inside the VPC. ECR image
# layers come from S3. KMS is missing on purpose: every KMS permission is kms:ViaService, i.e.
# called by SQS, DynamoDB or Secrets Manager on the task's behalf, never by the task.
ENDPOINTS_FOR_PREFIX = {
    "sqs": {"sqs"},
    "dynamodb": {"dynamodb"},
    "securityhub": {"securityhub"},
    "detective": {"api.detective"},
    "logs": {"logs"},
    "secretsmanager": {"secretsmanager"},
    "ecr": {"ecr.api", "ecr.dkr", "s3"},
}
GATEWAY_SERVICES = {"dynamodb", "s3"}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def key_policy() -> dict:
    return json.loads(KEY_POLICY_PATH.read_text(encoding="utf-8"))


def policy_statements(stack: Stack, role: str) -> list[dict]:
    return [s for policy in stack.resource(role)["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def kms_statements(stack: Stack, role: str) -> list[dict]:
    return [s for s in policy_statements(stack, role) if any(a.startswith("kms:") for a in _list(s["Action"]))]


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------ KMS key: encryption


def test_without_a_key_everything_uses_the_services_own_encryption(template):
    stack = Stack(template, **EXAMPLE_PARAMETERS)
    for queue in ("FindingsQueue", "DeadLetterQueue"):
        props = stack.resource(queue)
        assert props["SqsManagedSseEnabled"] is True
        assert "KmsMasterKeyId" not in props and "KmsDataKeyReusePeriodSeconds" not in props
    assert "SSESpecification" not in stack.resource("DedupTable")
    assert "KmsKeyId" not in stack.resource("LogGroup")
    assert "KmsKeyId" not in stack.resource("MetricsLogGroup")
    assert kms_statements(stack, "TaskRole") == []
    # Nothing in what gets deployed names a key or a KMS action.
    rendered = json.dumps(stack.rendered_template())
    assert ":kms:" not in rendered and '"kms:' not in rendered


def test_with_a_key_both_queues_the_table_and_the_log_group_use_it(template):
    stack = Stack(template, **WITH_KEY)
    assert stack.rule_failures() == []
    for queue in ("FindingsQueue", "DeadLetterQueue"):
        props = stack.resource(queue)
        # SQS accepts one kind of SSE at a time; false (not absent) turns SSE-SQS off on update.
        assert props["SqsManagedSseEnabled"] is False
        assert props["KmsMasterKeyId"] == KEY
        assert 60 <= props["KmsDataKeyReusePeriodSeconds"] <= 86400
    assert stack.resource("DedupTable")["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": KEY,
    }
    assert stack.resource("LogGroup")["KmsKeyId"] == KEY
    # The metrics sidecar's log group too: its EMF events carry the worker's metric labels.
    assert stack.resource("MetricsLogGroup")["KmsKeyId"] == KEY


def test_the_key_parameter_takes_a_key_arn_only(template):
    pattern = template["Parameters"]["KmsKeyArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, KEY)
    for wrong in ("*", "alias/findings-bridge", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/findings-bridge",
                  f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*", "1234abcd-12ab-34cd-56ef-1234567890ab"):
        assert not re.fullmatch(pattern, wrong), wrong


# ------------------------------------------------------------------ KMS key: who may use it


def test_task_role_may_use_the_key_only_through_sqs_and_dynamodb_for_this_stack(template):
    stack = Stack(template, **WITH_KEY)
    names = stack.names
    statements = {s["Sid"]: s for s in kms_statements(stack, "TaskRole")}
    assert statements == {
        "QueueKeyThroughSqs": {
            "Sid": "QueueKeyThroughSqs",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": KEY,
            "Condition": {"StringEquals": {
                "kms:ViaService": f"sqs.{REGION}.amazonaws.com",
                "kms:EncryptionContext:aws:sqs:arn": [names["FindingsQueue"]["Arn"], names["DeadLetterQueue"]["Arn"]],
            }},
        },
        "TableKeyThroughDynamoDb": {
            "Sid": "TableKeyThroughDynamoDb",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": KEY,
            "Condition": {"StringEquals": {
                "kms:ViaService": f"dynamodb.{REGION}.amazonaws.com",
                "kms:EncryptionContext:aws:dynamodb:tableName": names["DedupTable"]["Ref"],
                "kms:EncryptionContext:aws:dynamodb:subscriberId": ACCOUNT,
            }},
        },
    }


@pytest.mark.parametrize("parameters", [EXAMPLE_PARAMETERS, WITH_KEY], ids=["no-key", "key"])
def test_rendered_roles_are_least_privilege_in_both_variants(template, parameters):
    stack = Stack(template, **parameters)
    # The one explained ARN wildcard (test_iam.ALLOWED_ARN_WILDCARDS), as rendered.
    hubv2 = f"arn:aws:securityhub:{REGION}:{ACCOUNT}:hubv2/*"
    assert any(re.fullmatch(p, "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hubv2/*")
               for p in ALLOWED_ARN_WILDCARDS)
    # And the stack's own resources as their attributes render: LogGroup.Arn ends in ":*" (its
    # streams), which the as-written checker accepts as a Fn::GetAtt of the stack.
    accepted = {f"wildcard in literal ARN {arn!r}" for arn in
                [hubv2, *(n["Arn"] for n in stack.names.values() if "Arn" in n)]}
    for role in ("TaskRole", "ExecutionRole"):
        for statement in policy_statements(stack, role):
            problems = [p for p in violations(statement) if p not in accepted]
            assert problems == [], (role, statement)
            for action in _list(statement["Action"]):
                if action.startswith("kms:"):
                    assert action != "kms:*" and "kms:ViaService" in statement["Condition"]["StringEquals"]
    # The execution role's KMS use is SecretsKmsKeyArn's, not this key's.
    assert all(KEY not in json.dumps(s) for s in policy_statements(stack, "ExecutionRole"))


def test_key_policy_statements_are_least_privilege(key_policy):
    assert key_policy["Version"] == "2012-10-17"
    assert "kms:*" not in json.dumps(key_policy)
    for statement in key_policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement["Principal"]) == {"Service"}, "service principals only; roles get IAM policies"
        for action in _list(statement["Action"]):
            assert action.startswith("kms:") and "*" not in action and "?" not in action, action
        assert statement["Resource"] == "*", KEY_POLICY_STAR_REASON
        contexts = [k for op in statement["Condition"].values() for k in op if k.startswith("kms:EncryptionContext:")]
        assert contexts, f"{statement['Sid']}: no encryption context pins it to this stack's resources"
        # The checker of the template's own policies agrees once Resource '*' is read as the key.
        assert violations({**statement, "Resource": KEY}) == []
    assert len(KEY_POLICY_STAR_REASON) > 40


def test_key_policy_names_exactly_this_stacks_queues_and_log_group(template, key_policy):
    stack = Stack(template, **WITH_KEY)
    rendered = json.loads(stack.sub(KEY_POLICY_PATH.read_text(encoding="utf-8")))
    assert "${" not in json.dumps(rendered)
    by_sid = {s["Sid"]: s for s in rendered["Statement"]}
    assert set(by_sid) == {"FindingsBridgeEventBridgeToItsQueues", "FindingsBridgeCloudWatchLogsForItsLogGroup"}

    events = by_sid["FindingsBridgeEventBridgeToItsQueues"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert events["Condition"]["StringEquals"] == {
        "aws:SourceAccount": ACCOUNT,
        "kms:EncryptionContext:aws:sqs:arn": [stack.names["FindingsQueue"]["Arn"], stack.names["DeadLetterQueue"]["Arn"]],
    }
    # The queues EventBridge delivers to: the rules' target and their dead-letter target.
    for rule in ("AsffFindingsRule", "OcsfFindingsRule"):
        (target,) = stack.resource(rule)["Targets"]
        assert {target["Arn"], target["DeadLetterConfig"]["Arn"]} == set(events["Condition"]["StringEquals"]["kms:EncryptionContext:aws:sqs:arn"])

    logs = by_sid["FindingsBridgeCloudWatchLogsForItsLogGroup"]
    assert logs["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    # The log group ARNs as CloudWatch Logs puts them in the encryption context: without the ":*"
    # that the stack's LogGroup.Arn attributes carry. The worker's and the metrics sidecar's.
    log_group_arns = []
    for group in ("LogGroup", "MetricsLogGroup"):
        arn = stack.names[group]["Arn"].removesuffix(":*")
        assert arn.endswith(f":log-group:{stack.resource(group)['LogGroupName']}")
        log_group_arns.append(arn)
    assert logs["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arns}}
    # Every log group the stack can create is named, so none fails to be created under the key.
    assert len(stack.resources_of_type("AWS::Logs::LogGroup")) == len(log_group_arns)
    assert "kms:Decrypt" in logs["Action"] and "kms:GenerateDataKey" in logs["Action"]


def test_key_policy_placeholders_are_the_ones_the_runbook_replaces():
    text = KEY_POLICY_PATH.read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{([^}]+)\}", text)) == {"AWS::Partition", "AWS::Region", "AWS::AccountId", "ServiceName"}


@pytest.mark.parametrize("extra", [{}, {"KmsKeyArn": KEY}, {"VpcEndpoints": "create", "RouteTableIds": ROUTE_TABLES},
                                   {"VpcEndpoints": "existing", "EndpointSecurityGroupId": "sg-0aaaabbbbccccdddd"}],
                         ids=["plain", "key", "create-endpoints", "existing-endpoints"])
def test_task_definition_json_matches_every_encryption_and_network_variant(template, extra):
    task_json = json.loads(TASK_DEFINITION_PATH.read_text(encoding="utf-8"))
    assert _normalised(task_json) == rendered_task_definition(template, **EXAMPLE_PARAMETERS, **extra)


# ------------------------------------------------------------------ both variants, as deployed

DETECTIVE_GRAPH = f"arn:aws:detective:{REGION}:{ACCOUNT}:graph:0123456789abcdef0123456789abcdef"
CONCRETE_VARIANTS = {
    "no-key": EXAMPLE_PARAMETERS,
    "key": WITH_KEY,
    "create-endpoints": CREATE_ENDPOINTS,
    "existing-endpoints": EXISTING_ENDPOINTS,
    "key-endpoints-detective-mappings": {
        **CREATE_ENDPOINTS, "KmsKeyArn": KEY, "DetectiveGraphArn": DETECTIVE_GRAPH,
        "MappingsImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/findings-bridge-mappings:abc1234",
    },
}


@pytest.mark.parametrize("parameters", CONCRETE_VARIANTS.values(), ids=CONCRETE_VARIANTS.keys())
def test_each_variant_rendered_as_plain_values_passes_cfn_lint(template, parameters):
    """cfn-lint on the template checks every branch loosely; here each variant is resolved to the
    concrete resources CloudFormation would create, so property values (key ARNs, reuse period,
    endpoint types, SSE settings) are checked against the resource schemas as they would be."""
    from cfnlint.api import ManualArgs, lint

    stack = Stack(template, **parameters)
    assert stack.rule_failures() == []
    document = stack.rendered_template()
    matches = lint(json.dumps(document), config=ManualArgs(regions=[REGION]))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_rendered_cfn_lint_catches_a_bad_value(template):
    """The check above can fail: an out-of-range data key reuse period is reported."""
    from cfnlint.api import ManualArgs, lint

    document = Stack(template, **WITH_KEY).rendered_template()
    document["Resources"]["FindingsQueue"]["Properties"]["KmsDataKeyReusePeriodSeconds"] = 10
    assert lint(json.dumps(document), config=ManualArgs(regions=[REGION]))


# ------------------------------------------------------------------ VPC endpoints


def endpoints(stack: Stack) -> dict[str, dict]:
    return stack.resources_of_type("AWS::EC2::VPCEndpoint")


def service_suffix(endpoint: dict) -> str:
    prefix = f"com.amazonaws.{REGION}."
    assert endpoint["ServiceName"].startswith(prefix), endpoint["ServiceName"]
    return endpoint["ServiceName"][len(prefix):]


def test_no_endpoints_and_no_endpoint_rules_by_default(template):
    stack = Stack(template, **EXAMPLE_PARAMETERS)
    assert endpoints(stack) == {}
    assert stack.resource("EndpointSecurityGroup") is None
    assert stack.resource("ExistingEndpointsIngress") is None


@pytest.mark.parametrize("detective", [False, True])
def test_created_endpoints_cover_every_service_the_task_calls(template, detective):
    # With ImageRepositoryArns the execution role pulls from ECR, so ECR's endpoints are needed.
    params = dict(CREATE_ENDPOINTS, ImageRepositoryArns=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/findings-bridge")
    if detective:
        params["DetectiveGraphArn"] = f"arn:aws:detective:{REGION}:{ACCOUNT}:graph:0123456789abcdef0123456789abcdef"
    stack = Stack(template, **params)
    assert stack.rule_failures() == []
    created = endpoints(stack)
    assert set(created) <= set(ENDPOINT_RESOURCES)
    services = {service_suffix(e) for e in created.values()}

    # Every service the roles let the task (or the ECS agent on its interface) call.
    prefixes = set()
    for role in ("TaskRole", "ExecutionRole"):
        for statement in policy_statements(stack, role):
            for action in _list(statement["Action"]):
                prefix = action.split(":", 1)[0]
                if prefix == "kms":
                    assert "kms:ViaService" in statement["Condition"]["StringEquals"]
                    continue
                prefixes.add(prefix)
    needed = set().union(*(ENDPOINTS_FOR_PREFIX[p] for p in prefixes))
    assert services == needed
    assert ("api.detective" in services) == detective

    for endpoint in created.values():
        if service_suffix(endpoint) in GATEWAY_SERVICES:
            assert endpoint["VpcEndpointType"] == "Gateway"
            assert endpoint["RouteTableIds"] == ROUTE_TABLES.split(",")
            assert "SubnetIds" not in endpoint
        else:
            assert endpoint["VpcEndpointType"] == "Interface"
            assert endpoint["PrivateDnsEnabled"] is True, "the SDK's default hostnames must resolve to it"
            assert endpoint["SubnetIds"] == stack.params["SubnetIds"]
            assert endpoint["SecurityGroupIds"] == [stack.names["EndpointSecurityGroup"]["Ref"]]
        assert endpoint["VpcId"] == stack.params["VpcId"]
        assert "PolicyDocument" not in endpoint, "see the template: default policy on purpose"


def test_endpoint_security_group_admits_only_the_tasks_and_sends_nothing(template):
    group = Stack(template, **CREATE_ENDPOINTS).resource("EndpointSecurityGroup")
    task_group = Stack(template, **CREATE_ENDPOINTS).names["TaskSecurityGroup"]["Ref"]
    assert group["SecurityGroupIngress"] == [{
        "Description": group["SecurityGroupIngress"][0]["Description"],
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "SourceSecurityGroupId": task_group,
    }]
    (egress,) = group["SecurityGroupEgress"]
    assert egress["CidrIp"] == "127.0.0.1/32", "replaces the default allow-all egress with a rule that matches nothing"


def test_existing_endpoints_get_one_rule_for_the_tasks(template):
    stack = Stack(template, **EXISTING_ENDPOINTS)
    assert stack.rule_failures() == []
    assert endpoints(stack) == {} and stack.resource("EndpointSecurityGroup") is None
    rule = stack.resource("ExistingEndpointsIngress")
    assert rule["GroupId"] == "sg-0aaaabbbbccccdddd"
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert rule["SourceSecurityGroupId"] == stack.names["TaskSecurityGroup"]["Ref"]


def test_service_waits_for_the_endpoints(template):
    service = template["Resources"]["Service"]
    assert service["DependsOn"] == "NetworkReady"
    metadata = json.dumps(template["Resources"]["NetworkReady"]["Metadata"])
    for logical in (*ENDPOINT_RESOURCES, "ExistingEndpointsIngress"):
        assert json.dumps({"Ref": logical}) in metadata, logical


@pytest.mark.parametrize(
    "parameters,failure",
    [
        ({**EXAMPLE_PARAMETERS, "VpcEndpoints": "create"},
         "RouteTableIds is required with VpcEndpoints=create (DynamoDB and S3 gateway endpoints)."),
        ({**EXAMPLE_PARAMETERS, "VpcEndpoints": "existing"},
         "EndpointSecurityGroupId is required with VpcEndpoints=existing."),
    ],
)
def test_endpoint_modes_reject_missing_parameters(template, parameters, failure):
    assert Stack(template, **parameters).rule_failures() == [failure]
