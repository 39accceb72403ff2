"""Translate the SAM template to plain CloudFormation offline, so cfn-lint sees what CloudFormation will see.

Runs with the SAM CLI's environment (`.tools/sam/bin/python`), which holds the samtranslator library:
    .tools/sam/bin/python tools/translate_template.py template.yaml -o translated.json [-p Name=Value ...]

Local artifacts are replaced the way `sam package` would: CodeUri / ContentUri become placeholder S3
locations, and a local DefinitionUri (ASL file) is inlined as Definition so its states are linted too.
Every stack parameter keeps its default unless -p overrides it; pseudo parameters get fixed test values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_BUCKET = "translate-placeholder-bucket"
PSEUDO_PARAMETERS = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "reranker-translate",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/reranker-translate/00000000",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NotificationARNs": [],
}
# Policies SAM itself attaches by name; offline there is no IAM to look their ARNs up.
MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess": "AWSXrayWriteOnlyAccess",
        "AWSXRayDaemonWriteAccess": "AWSXRayDaemonWriteAccess",
    }.items()
}


def replace_local_artifacts(template: dict[str, Any], base_dir: Path) -> None:
    """Stand in for `sam package`: S3 placeholders for code, inline ASL for state machines."""
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}.zip"
        definition_uri = properties.get("DefinitionUri")
        if isinstance(definition_uri, str) and not definition_uri.startswith("s3://"):
            properties["Definition"] = json.loads((base_dir / definition_uri).read_text(encoding="utf-8"))
            del properties["DefinitionUri"]


def translate(template_path: Path, overrides: dict[str, str]) -> dict[str, Any]:
    template = yaml_parse(template_path.read_text(encoding="utf-8"))
    replace_local_artifacts(template, template_path.parent)
    parameters: dict[str, Any] = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    unknown = sorted(set(overrides) - set(template.get("Parameters", {})))
    if unknown:
        raise SystemExit(f"unknown template parameters: {', '.join(unknown)}")
    parameters.update(overrides)
    parameters.update(PSEUDO_PARAMETERS)
    # A session only to name the region; no credentials are read and no call is made.
    session = boto3.session.Session(region_name=PSEUDO_PARAMETERS["AWS::Region"])
    translator = Translator(managed_policy_map=MANAGED_POLICIES, sam_parser=Parser(), boto_session=session)
    translated: dict[str, Any] = translator.translate(
        sam_template=template,
        parameter_values=parameters,
        get_managed_policy_map=lambda: MANAGED_POLICIES,
    )
    return translated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("template", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.parameter)
    try:
        translated = translate(args.template, overrides)
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"{args.template}: {cause.message}", file=sys.stderr)
        return 1
    args.output.write_text(json.dumps(translated, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
