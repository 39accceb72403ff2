"""What `sam local` reads from template.yaml, checked with the SAM CLI's own readers, and what deploys from it.

    .tools/sam/bin/python -m tools.sam_local.check_template template.yaml

sam local: the function's model layer is the template's ModelLayer (not an unevaluated Fn::If taken for a
layer ARN), the Architecture parameter reaches the function, and every HTTP API route of the template is
served by the function with payload 2.0 (`sam local start-api` finds no routes otherwise).
Deploy (the offline SAM translation): the HTTP API integration calls the live alias, as `!Ref
RerankFunction.Alias` did, and depends on it; the function has the layer, or no layer with an S3 model.
Runs without Docker or AWS; prints one line per check, exits 1 on the first failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from samcli.lib.providers.api_provider import ApiProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.yamlhelper import yaml_parse

from tools.translate_template import translate

FUNCTION = "RerankFunction"
LAYER = "ModelLayer"
INTEGRATION = "HttpApiIntegration"


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"FAIL  {message}", file=sys.stderr)
        sys.exit(1)
    print(f"  ok  {message}")


def template_routes(template: dict[str, Any]) -> set[tuple[str, str]]:
    routes = set()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::ApiGatewayV2::Route":
            method, path = resource["Properties"]["RouteKey"].split(" ", 1)
            routes.add((method, path))
    return routes


def check_sam_local(template_path: Path, template: dict[str, Any]) -> None:
    for architecture in ("arm64", "x86_64"):
        stacks, _ = SamLocalStackProvider.get_stacks(
            str(template_path), parameter_overrides={"Architecture": architecture}
        )
        function = SamFunctionProvider(stacks, ignore_code_extraction_warnings=True).get(FUNCTION)
        check(function is not None, f"sam local finds {FUNCTION}")
        assert function is not None
        layers = [(layer.name, layer.is_defined_within_template) for layer in function.layers]
        check(layers == [(LAYER, True)], f"sam local mounts the template's {LAYER} (got {layers})")
        check(
            function.architectures == [architecture],
            f"Architecture={architecture} reaches sam local (got {function.architectures})",
        )

    served = {
        (method, route.path): (route.function_name, route.payload_format_version)
        for route in ApiProvider(stacks).api.routes
        for method in route.methods
    }
    expected = template_routes(template)
    check(bool(expected), f"the template declares HTTP API routes ({len(expected)})")
    check(
        set(served) == expected,
        f"sam local start-api serves exactly the template's routes (got {sorted(served)})",
    )
    wrong = {route: target for route, target in served.items() if target != (FUNCTION, "2.0")}
    check(not wrong, f"every route invokes {FUNCTION} with payload 2.0 (wrong: {wrong})")


def check_translation(template_path: Path, template: dict[str, Any]) -> None:
    alias_name = template["Resources"][FUNCTION]["Properties"]["AutoPublishAlias"]
    alias_id = f"{FUNCTION}Alias{alias_name}"  # SAM's documented name for the AutoPublishAlias alias
    resources = translate(template_path, {})["Resources"]
    alias = resources.get(alias_id, {})
    check(
        alias.get("Type") == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == alias_name,
        f"the translated stack has the alias {alias_id}",
    )
    integration = resources[INTEGRATION]
    check(
        integration["Properties"]["IntegrationUri"] == {"Fn::Sub": f"${{{FUNCTION}.Arn}}:{alias_name}"},
        f"the HTTP API integration invokes the {alias_name} alias's ARN",
    )
    check(integration.get("DependsOn") == alias_id, f"the HTTP API integration depends on {alias_id}")
    layers = resources[FUNCTION]["Properties"]["Layers"]
    check(
        isinstance(layers, dict)
        and layers.get("Fn::If", [None])[0] == "UseLayerModel"
        and layers["Fn::If"][2] == [],
        "the function has the model layer, or no layer at all with an S3 model",
    )
    layer_conditions = [
        resource.get("Condition")
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::LayerVersion"
    ]
    check(layer_conditions == ["UseLayerModel"], "the layer is built only for the layer model source")


def main() -> int:
    template_path = Path(sys.argv[1])
    template = yaml_parse(template_path.read_text(encoding="utf-8"))
    check_sam_local(template_path, template)
    check_translation(template_path, template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
