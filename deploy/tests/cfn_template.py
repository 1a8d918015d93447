"""Loads deploy/cloudformation.yaml with cfn-lint's own decoder (so !Ref, !Sub, !If ... parse) and
renders parts of it for a given set of parameter values, the way CloudFormation would.

The renderer knows the intrinsic functions the template uses (Ref, Fn::GetAtt, Fn::Sub, Fn::If,
Fn::Join, Fn::Split, Fn::FindInMap, conditions) and stands in fixed physical names for the
stack's own resources, so a rendered task definition can be compared with
deploy/ecs-task-definition.json field by field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

DEPLOY = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = DEPLOY / "cloudformation.yaml"
TASK_DEFINITION_PATH = DEPLOY / "ecs-task-definition.json"
DOCKERFILE_PATH = DEPLOY / "Dockerfile"
KEY_POLICY_PATH = DEPLOY / "kms-key-policy.json"

REGION = "us-east-1"
ACCOUNT = "111122223333"

NO_VALUE = object()


def load_template() -> dict:
    template, matches = decode(str(TEMPLATE_PATH))
    if matches:
        raise AssertionError(f"cfn-lint could not decode the template: {matches}")
    return _plain(template)


def _plain(value: Any) -> Any:
    """cfn-lint returns str/dict/list subclasses carrying line marks; tests want plain values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def resource_names(service: str) -> dict[str, dict[str, str]]:
    """Physical ids and attributes the stack's resources get for ServiceName=`service`."""
    queue = f"{service}-findings"
    dlq = f"{service}-dlq"
    sqs = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}"
    return {
        "FindingsQueue": {
            "Ref": f"{sqs}/{queue}",
            "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "QueueName": queue,
        },
        "DeadLetterQueue": {
            "Ref": f"{sqs}/{dlq}",
            "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{dlq}",
            "QueueName": dlq,
        },
        "DedupTable": {
            "Ref": f"{service}-dedup",
            "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{service}-dedup",
        },
        "LogGroup": {
            "Ref": f"/ecs/{service}",
            "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/{service}:*",
        },
        "ExecutionRole": {"Ref": f"{service}-execution", "Arn": f"arn:aws:iam::{ACCOUNT}:role/{service}-execution"},
        "TaskRole": {"Ref": f"{service}-task", "Arn": f"arn:aws:iam::{ACCOUNT}:role/{service}-task"},
        "Cluster": {"Ref": service},
        "Service": {"Name": service, "Ref": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{service}/{service}"},
        "TaskDefinition": {"Ref": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{service}:1"},
        "ScalableTarget": {"Ref": f"service/{service}/{service}|ecs:service:DesiredCount|ecs"},
        "TaskSecurityGroup": {"Ref": "sg-0123456789abcdef0"},
        "AsffFindingsRule": {"Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{service}-asff"},
        "OcsfFindingsRule": {"Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{service}-ocsf"},
        "EndpointSecurityGroup": {"Ref": "sg-0e0d0c0b0a0908070"},
        **{
            logical: {"Ref": f"vpce-{i:017x}"}
            for i, logical in enumerate(ENDPOINT_RESOURCES, start=1)
        },
        "ExistingEndpointsIngress": {"Ref": "sgr-0123456789abcdef0"},
        "MetricsLogGroup": {
            "Ref": f"/ecs/{service}/metrics",
            "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/{service}/metrics:*",
        },
        "Dashboard": {"Ref": f"{service}-{REGION}"},
        **{
            logical: {"Ref": f"{service}-{suffix}", "Arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{service}-{suffix}"}
            for logical, suffix in ALARMS.items()
        },
    }


# The alarms of the template, by logical id, and the suffix of their names.
ALARMS = {
    "DeadLetterQueueNotEmpty": "dlq-not-empty",
    "DeadLetterQueueMessagesExpiring": "dlq-messages-expiring",
    "ConnectionPaused": "connection-paused",
    "QueueOldestMessageTooOld": "queue-oldest-message-age",
    "NoRunningTasks": "no-running-tasks",
}


# The VPC endpoint resources of the template (VpcEndpoints=create), by logical id.
ENDPOINT_RESOURCES = (
    "SqsEndpoint", "SecurityHubEndpoint", "SecretsManagerEndpoint", "LogsEndpoint", "EcrApiEndpoint",
    "EcrDkrEndpoint", "DetectiveEndpoint", "DynamoDbEndpoint", "S3Endpoint",
)


class Stack:
    """A template with parameter values bound: evaluates conditions and renders values."""

    def __init__(self, template: dict, **overrides: str):
        self.template = template
        declared = template["Parameters"]
        unknown = set(overrides) - set(declared)
        if unknown:
            raise KeyError(f"not parameters of the template: {sorted(unknown)}")
        self.params: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                raw = overrides[name]
            elif "Default" in spec:
                raw = str(spec["Default"])
            else:
                raise KeyError(f"parameter {name} has no default; pass it")
            self.params[name] = raw.split(",") if spec["Type"].startswith(("CommaDelimitedList", "List<")) else raw
        self.names = resource_names(self.params["ServiceName"])
        self._conditions: dict[str, bool] = {}

    # -- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._eval_condition(self.template["Conditions"][name])
        return self._conditions[name]

    def _eval_condition(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            (fn, arg), = expr.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                left, right = (self.render(a) for a in arg)
                return left == right
            if fn == "Fn::Not":
                return not self._eval_condition(arg[0])
            if fn == "Fn::And":
                return all(self._eval_condition(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._eval_condition(a) for a in arg)
            if fn == "Fn::Contains":  # Rules only
                haystack, needle = (self.render(a) for a in arg)
                return needle in haystack
        return self.render(expr)

    def rule_failures(self) -> list[str]:
        """AssertDescriptions of the template's Rules that these parameters violate."""
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self._eval_condition(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self._eval_condition(assertion["Assert"]):
                    failures.append(assertion["AssertDescription"])
        return failures

    # -- values
    def render(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.render(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.names[logical][attribute]
            if fn == "Fn::If":
                cond, when_true, when_false = arg
                return self.render(when_true if self.condition(cond) else when_false)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(self.render(items))
            if fn == "Fn::Split":
                sep, text = arg
                return self.render(text).split(sep)
            if fn == "Fn::FindInMap":
                table, key, attr = (self.render(a) for a in arg)
                return self.template["Mappings"][table][key][attr]
        out = {}
        for k, v in value.items():
            rendered = self.render(v)
            if rendered is not NO_VALUE:
                out[k] = rendered
        return out

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": self.params["ServiceName"],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.names[name]["Ref"]

    def _sub(self, arg: Any) -> str:
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.render(v) for k, v in arg[1].items()})

        def one(match: re.Match) -> str:
            key = match.group(1)
            if key in local:
                return str(local[key])
            if "." in key:
                logical, attribute = key.split(".", 1)
                return self.names[logical][attribute]
            return str(self._ref(key))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resource(self, logical: str) -> dict | None:
        spec = self.template["Resources"][logical]
        if "Condition" in spec and not self.condition(spec["Condition"]):
            return None
        return self.render(spec.get("Properties", {}))

    def resources_of_type(self, resource_type: str) -> dict[str, dict]:
        """Rendered properties of every resource of that type these parameters create."""
        out = {}
        for logical, spec in self.template["Resources"].items():
            if spec["Type"] == resource_type:
                rendered = self.resource(logical)
                if rendered is not None:
                    out[logical] = rendered
        return out

    def rendered_template(self) -> dict:
        """The template as CloudFormation would see it for these parameters: only the resources
        it creates, every property resolved to a plain value."""
        resources = {}
        for logical, spec in self.template["Resources"].items():
            properties = self.resource(logical)
            if properties is None:
                continue
            rendered = {"Type": spec["Type"], "Properties": properties}
            for attribute in ("DeletionPolicy", "UpdateReplacePolicy", "DependsOn"):
                if attribute in spec:
                    rendered[attribute] = spec[attribute]
            resources[logical] = rendered
        return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}

    def sub(self, text: str) -> str:
        """Renders one Fn::Sub template string (as deploy/kms-key-policy.json uses them)."""
        return self._sub(text)


def camel(value: Any, keep_keys: bool = False) -> Any:
    """CloudFormation property names (PascalCase) to ECS API names (camelCase), recursively;
    the keys of a log driver's Options are driver options and stay as they are."""
    if isinstance(value, list):
        return [camel(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = k if keep_keys else k[:1].lower() + k[1:]
            out[key] = camel(v, keep_keys=(k == "Options"))
        return out
    return value
