"""Least privilege in deploy/cloudformation.yaml: no IAM or resource-policy statement that allows
a wildcard action, and a wildcard resource only where AWS accepts nothing narrower.

The checker reads the template as written (cfn-lint's decoder keeps !Ref / !Sub / !If as
intrinsic functions), so it judges every conditional statement, not only those a given set of
parameters renders. Deny statements are exempt: a wildcard in a Deny narrows access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from cfn_template import load_template

# Actions that may use Resource "*", with the reason AWS leaves no narrower choice.
ALLOWED_STAR_RESOURCE: dict[str, str] = {
    "ecr:GetAuthorizationToken": (
        "ECR registry login has no resource type, so IAM accepts only Resource '*' for it; the "
        "token alone pulls nothing without the repository-scoped ecr:BatchGetImage and "
        "ecr:GetDownloadUrlForLayer."
    ),
}

# Wildcards inside an ARN (as written in an Fn::Sub template), with the reason.
ALLOWED_ARN_WILDCARDS: dict[str, str] = {
    r"arn:\$\{AWS::Partition\}:securityhub:\$\{AWS::Region\}:\$\{AWS::AccountId\}:hubv2/\*": (
        "securityhub:BatchUpdateFindings authorises BatchUpdateFindingsV2 against the V2 hub, "
        "whose id Security Hub generates at enablement; there is exactly one per account and "
        "Region, and the ARN pins both."
    ),
}

# Exactly what the worker calls (deploy/README.md lists the same).
WORKER_ACTIONS = {
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
    "sqs:SendMessage", "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks",
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:DescribeTable", "dynamodb:Scan", "securityhub:BatchUpdateFindings",
}
DETECTIVE_ACTIONS = {"detective:StartInvestigation", "detective:GetInvestigation", "detective:ListIndicators"}
# The rotating ticket-system credential, read by the worker from the configured secrets only.
SECRET_READS = {("JiraSecretGiven", "JiraSecretArn"), ("ServiceNowSecretGiven", "ServiceNowSecretArn")}
# With the metrics sidecar (same task role): its EMF events into the stack's metrics log group.
METRICS_SIDECAR_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# With KmsKeyArn: what SQS and DynamoDB ask KMS for on the worker's behalf, per service.
KMS_ACTIONS_VIA = {
    "sqs": {"kms:GenerateDataKey", "kms:Decrypt"},
    "dynamodb": {"kms:Decrypt"},
}

# A parameter pattern that can match anything (".*", ".+") could let "*" into a Resource.
MATCH_ANYTHING = re.compile(r"(?<!\\)\.[*+]")


@dataclass
class Statement:
    where: str  # resource/path, for messages
    body: dict
    condition: str | None  # the Fn::If condition that includes it, if any


def policy_statements(template: dict) -> Iterator[Statement]:
    """Every statement of every policy document in the template, both branches of each Fn::If."""
    for logical, resource in template["Resources"].items():
        yield from _find_documents(resource.get("Properties", {}), logical, template)


def _find_documents(node: Any, where: str, template: dict) -> Iterator[Statement]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("PolicyDocument", "AssumeRolePolicyDocument"):
                statements = value["Statement"]
                if isinstance(statements, dict):
                    statements = [statements]
                for i, item in enumerate(statements):
                    yield from _expand(item, f"{where}/{key}/Statement/{i}", None)
            else:
                yield from _find_documents(value, f"{where}/{key}", template)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _find_documents(value, f"{where}/{i}", template)


def _expand(item: Any, where: str, condition: str | None) -> Iterator[Statement]:
    if isinstance(item, dict) and set(item) == {"Fn::If"}:
        cond, when_true, when_false = item["Fn::If"]
        yield from _expand(when_true, f"{where}[{cond}]", cond)
        yield from _expand(when_false, f"{where}[not {cond}]", condition)
    elif item == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield Statement(where, item, condition)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _resource_items(value: Any) -> Iterator[Any]:
    """Resource entries, looking through Fn::If branches."""
    for item in _as_list(value):
        if isinstance(item, dict) and set(item) == {"Fn::If"}:
            _, when_true, when_false = item["Fn::If"]
            yield from _resource_items(when_true)
            yield from _resource_items(when_false)
        elif item != {"Ref": "AWS::NoValue"}:
            yield item


def violations(statement: dict, parameters: dict | None = None) -> list[str]:
    """What is wrong with one policy statement; empty when it is least privilege."""
    parameters = parameters or {}
    problems: list[str] = []
    if statement.get("Effect") != "Allow":
        return problems
    for negated in ("NotAction", "NotResource", "NotPrincipal"):
        if negated in statement:
            problems.append(f"{negated} in an Allow statement grants everything not listed")

    actions = [a for a in _as_list(statement.get("Action")) if isinstance(a, str)]
    if len(actions) != len(_as_list(statement.get("Action"))):
        problems.append("Action must be literal strings so it can be reviewed")
    for action in actions:
        if "*" in action or "?" in action:
            problems.append(f"wildcard action {action!r}")

    principal = statement.get("Principal")
    if principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))):
        problems.append("Allow to Principal '*'")

    if "Principal" in statement and "Resource" not in statement:
        return problems  # a trust policy: the role itself is the resource

    resources = list(_resource_items(statement.get("Resource")))
    if not resources:
        problems.append("no Resource")
    for resource in resources:
        if resource == "*":
            for action in actions:
                if action not in ALLOWED_STAR_RESOURCE:
                    problems.append(f"Resource '*' for {action}, which supports resource-level permissions")
        elif isinstance(resource, str):
            if "*" in resource:
                problems.append(f"wildcard in literal ARN {resource!r}")
        elif isinstance(resource, dict) and "Fn::Sub" in resource:
            text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
            if "*" in text and not any(re.fullmatch(p, text) for p in ALLOWED_ARN_WILDCARDS):
                problems.append(f"wildcard in ARN {text!r} is not on the allow-list")
        elif isinstance(resource, dict) and "Ref" in resource:
            name = resource["Ref"]
            spec = parameters.get(name)
            if spec is None:
                continue  # a resource of the stack: its Ref is its own ARN or name
            pattern = spec.get("AllowedPattern")
            if pattern is None:
                problems.append(f"parameter {name} is used as a Resource but has no AllowedPattern")
            elif MATCH_ANYTHING.search(pattern) or re.fullmatch(pattern, "*"):
                problems.append(f"parameter {name}'s AllowedPattern lets a wildcard through")
        elif isinstance(resource, dict) and "Fn::GetAtt" in resource:
            continue
        else:
            problems.append(f"unrecognised Resource form {resource!r}")
    return problems


# ------------------------------------------------------------------ the template


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def statements(template) -> list[Statement]:
    found = list(policy_statements(template))
    assert len(found) > 10, "the walker no longer finds the template's policies"
    return found


def test_no_statement_in_the_template_is_broader_than_it_must_be(template, statements):
    report = [
        f"{s.where}: {problem}"
        for s in statements
        for problem in violations(s.body, template["Parameters"])
    ]
    assert not report, "\n".join(report)


def test_every_allow_list_entry_is_used_and_explained(template, statements):
    star_actions = {
        action
        for s in statements
        if s.body.get("Effect") == "Allow" and "*" in _resource_items(s.body.get("Resource"))
        for action in _as_list(s.body.get("Action"))
    }
    assert star_actions == set(ALLOWED_STAR_RESOURCE), "stale or missing allow-list entries"
    sub_texts = {
        r["Fn::Sub"] for s in statements for r in _resource_items(s.body.get("Resource"))
        if isinstance(r, dict) and isinstance(r.get("Fn::Sub"), str) and "*" in r["Fn::Sub"]
    }
    for pattern in ALLOWED_ARN_WILDCARDS:
        assert any(re.fullmatch(pattern, t) for t in sub_texts), f"unused ARN wildcard entry {pattern}"
    for reason in [*ALLOWED_STAR_RESOURCE.values(), *ALLOWED_ARN_WILDCARDS.values()]:
        assert len(reason) > 40, "say why AWS requires it"


def role_statements(statements: list[Statement], role: str) -> list[Statement]:
    prefix = f"{role}/Policies/"
    return [s for s in statements if s.where.startswith(prefix)]


def test_task_role_grants_exactly_what_the_worker_calls(statements):
    task = role_statements(statements, "TaskRole")
    unconditional = {a for s in task if s.condition is None for a in _as_list(s.body["Action"])}
    assert unconditional == WORKER_ACTIONS
    assert {s.condition for s in task if s.condition is not None} == {
        "DetectiveEnabled", "HasKmsKey", "JiraSecretGiven", "ServiceNowSecretGiven", "HasSecretsKmsKey",
        "HasMetricsCollector",
    }
    detective = [s for s in task if s.condition == "DetectiveEnabled"]
    assert {a for s in detective for a in _as_list(s.body["Action"])} == DETECTIVE_ACTIONS
    assert all(s.body["Resource"] == {"Ref": "DetectiveGraphArn"} for s in detective)
    (metrics,) = [s for s in task if s.condition == "HasMetricsCollector"]
    assert set(_as_list(metrics.body["Action"])) == METRICS_SIDECAR_ACTIONS
    assert metrics.body["Resource"] == {"Fn::GetAtt": ["MetricsLogGroup", "Arn"]}


def test_task_role_uses_the_key_only_through_sqs_and_dynamodb(statements):
    """As written (both branches): every KMS statement is conditional on the key, names the key
    alone, and pins kms:ViaService and the encryption context to this stack's resources."""
    task = role_statements(statements, "TaskRole")
    kms = [s for s in task if any(a.startswith("kms:") for a in _as_list(s.body["Action"]))]
    assert {s.condition for s in kms} == {"HasKmsKey", "HasSecretsKmsKey"}
    kms = [s for s in kms if s.condition == "HasKmsKey"]
    via = {}
    for s in kms:
        assert s.body["Resource"] == {"Ref": "KmsKeyArn"}, s.where
        condition = s.body["Condition"]
        assert set(condition) == {"StringEquals"}, s.where
        service_sub = condition["StringEquals"]["kms:ViaService"]["Fn::Sub"]
        service = service_sub.split(".", 1)[0]
        assert service_sub == f"{service}.${{AWS::Region}}.amazonaws.com", s.where
        via[service] = set(_as_list(s.body["Action"]))
        context = {k: v for k, v in condition["StringEquals"].items() if k.startswith("kms:EncryptionContext:")}
        if service == "sqs":
            assert context == {"kms:EncryptionContext:aws:sqs:arn": [
                {"Fn::GetAtt": ["FindingsQueue", "Arn"]}, {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
            ]}
        else:
            assert context == {
                "kms:EncryptionContext:aws:dynamodb:tableName": {"Ref": "DedupTable"},
                "kms:EncryptionContext:aws:dynamodb:subscriberId": {"Ref": "AWS::AccountId"},
            }
    assert via == KMS_ACTIONS_VIA


def test_no_policy_in_the_template_grants_kms_beyond_named_keys(template, statements):
    """kms:* never appears, and every KMS statement names one key parameter and a kms:ViaService."""
    import json

    assert "kms:*" not in json.dumps(template)
    for s in statements:
        actions = _as_list(s.body.get("Action"))
        if s.body.get("Effect") != "Allow" or not any(a.startswith("kms:") for a in actions):
            continue
        assert s.body["Resource"] in ({"Ref": "KmsKeyArn"}, {"Ref": "SecretsKmsKeyArn"}), s.where
        assert "kms:ViaService" in s.body["Condition"]["StringEquals"], s.where


def test_task_role_reads_only_the_configured_secrets(statements):
    reads = [s for s in role_statements(statements, "TaskRole") if "secretsmanager:GetSecretValue" in _as_list(s.body["Action"])]
    assert {(s.condition, s.body["Resource"]["Ref"]) for s in reads} == SECRET_READS
    assert all(_as_list(s.body["Action"]) == ["secretsmanager:GetSecretValue"] for s in reads)


def test_task_role_uses_the_secrets_key_only_through_secrets_manager_for_its_secrets(statements):
    """With SecretsKmsKeyArn: kms:Decrypt on that key alone, through Secrets Manager, and the
    encryption context (which Secrets Manager sets to the secret's ARN) names the two secrets,
    each only when it is configured."""
    task = role_statements(statements, "TaskRole")
    (decrypt,) = [s for s in task if s.condition == "HasSecretsKmsKey"]
    assert _as_list(decrypt.body["Action"]) == ["kms:Decrypt"]
    assert decrypt.body["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    condition = decrypt.body["Condition"]["StringEquals"]
    assert condition["kms:ViaService"] == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
    assert condition["kms:EncryptionContext:SecretARN"] == [
        {"Fn::If": [given, {"Ref": arn}, {"Ref": "AWS::NoValue"}]} for given, arn in sorted(SECRET_READS)
    ]


def test_task_role_touches_only_this_stacks_queue_table_and_hub(statements):
    allowed_refs = {
        "FindingsQueue", "DeadLetterQueue", "DedupTable", "DetectiveGraphArn", "KmsKeyArn",
        "JiraSecretArn", "ServiceNowSecretArn", "SecretsKmsKeyArn", "MetricsLogGroup",
    }
    for s in role_statements(statements, "TaskRole"):
        for resource in _resource_items(s.body["Resource"]):
            if "Fn::GetAtt" in resource:
                logical = resource["Fn::GetAtt"][0] if isinstance(resource["Fn::GetAtt"], list) else resource["Fn::GetAtt"].split(".")[0]
                assert logical in allowed_refs, s.where
            elif "Ref" in resource:
                assert resource["Ref"] in allowed_refs, s.where
            else:
                assert ":securityhub:${AWS::Region}:${AWS::AccountId}:hub" in resource["Fn::Sub"], s.where


def test_dlq_only_is_redriven(statements):
    (redrive,) = [s for s in role_statements(statements, "TaskRole") if "sqs:StartMessageMoveTask" in _as_list(s.body["Action"])]
    assert redrive.body["Resource"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_execution_role_reads_only_the_configured_secrets(statements):
    reads = [s for s in role_statements(statements, "ExecutionRole") if "secretsmanager:GetSecretValue" in _as_list(s.body["Action"])]
    assert {(s.condition, s.body["Resource"]["Ref"]) for s in reads} == SECRET_READS


def test_roles_trust_only_ecs_tasks_of_this_account(template):
    for role in ("TaskRole", "ExecutionRole"):
        (trust,) = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert trust["Action"] == "sts:AssumeRole"
        assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


# ------------------------------------------------------------------ the checker itself


def test_checker_rejects_a_wildcard_action():
    assert violations({"Effect": "Allow", "Action": "sqs:*", "Resource": {"Fn::GetAtt": ["FindingsQueue", "Arn"]}})
    assert violations({"Effect": "Allow", "Action": ["dynamodb:Get*"], "Resource": {"Fn::GetAtt": ["DedupTable", "Arn"]}})


def test_checker_rejects_star_resource_for_an_action_with_resource_types():
    problems = violations({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "*"})
    assert problems == ["Resource '*' for sqs:SendMessage, which supports resource-level permissions"]
    assert violations({"Effect": "Allow", "Action": "securityhub:BatchUpdateFindings", "Resource": ["*"]})


def test_checker_accepts_star_resource_for_an_allow_listed_action():
    assert violations({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}) == []


def test_checker_rejects_star_resource_inside_a_conditional_branch():
    statement = {
        "Effect": "Allow",
        "Action": "sqs:ReceiveMessage",
        "Resource": {"Fn::If": ["SomeCondition", "*", {"Ref": "AWS::NoValue"}]},
    }
    assert violations(statement)


def test_checker_rejects_arn_wildcards_not_on_the_allow_list():
    assert violations({"Effect": "Allow", "Action": "sqs:SendMessage",
                       "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:*"}})
    assert violations({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:111122223333:*"})
    hubv2 = {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hubv2/*"}
    assert violations({"Effect": "Allow", "Action": "securityhub:BatchUpdateFindings", "Resource": hubv2}) == []


def test_checker_rejects_negations_and_open_principals():
    assert violations({"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Fn::GetAtt": ["DedupTable", "Arn"]}})
    assert violations({"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage",
                       "Resource": {"Fn::GetAtt": ["FindingsQueue", "Arn"]}})
    assert violations({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage",
                       "Resource": {"Fn::GetAtt": ["FindingsQueue", "Arn"]}})


def test_checker_rejects_parameters_that_could_carry_a_wildcard():
    statement = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": "SecretArn"}}
    assert violations(statement, {"SecretArn": {"Type": "String"}})
    assert violations(statement, {"SecretArn": {"Type": "String", "AllowedPattern": "^arn:aws:secretsmanager:.+$"}})
    tight = {"Type": "String", "AllowedPattern": "^arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$"}
    assert violations(statement, {"SecretArn": tight}) == []


def test_checker_leaves_deny_statements_alone():
    assert violations({"Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": "*"}) == []
