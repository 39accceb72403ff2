#!/usr/bin/env bash
# Checks of the SAM stack, run by `./dev test` once .venv, .tools/sam and .tools/checkov exist.
# One line per check on success; on failure the failing tool's output and a non-zero exit.
#   bash tools/check_stack.sh
# Environment: UV (default .tools/uv/bin/uv), PYTHON313 (default the pyenv 3.13.0 interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."

PYENV_ROOT=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
PYTHON313=${PYTHON313:-$PYENV_ROOT/versions/3.13.0/bin/python3.13}
UV=${UV:-.tools/uv/bin/uv}
SAM=.tools/sam/bin/sam
CFN_LINT=.venv/bin/cfn-lint
CHECKOV=.tools/checkov/bin/checkov
FIXTURE_ARCHIVE=.fixtures/ms-marco-TinyBERT-L-2-v2.zip
MODEL_NAME=ms-marco-TinyBERT-L-2-v2
# The function's cache survives between runs (sam keys it on handler/ and requirements.txt); the layer is
# always rebuilt, because its input (MODEL_ARCHIVE) is an environment variable that sam's cache cannot see.
FUNCTION_CACHE=.aws-sam/check-stack-cache

export SAM_CLI_TELEMETRY=0 UV_PYTHON_DOWNLOADS=never
# sam build resolves the python3.13 runtime to the first python3.13 (with pip) on PATH.
export PATH="$(dirname "$PYTHON313"):$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/check-stack.XXXXXX")
background_pids=()
cleanup() {
  for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

started=$SECONDS
ok() { printf '  ok  %-58s %3ss\n' "$1" "$((SECONDS - started))"; }
fail() {
  printf 'FAIL  %s\n' "$1" >&2
  [[ -n ${2:-} && -s $2 ]] && sed 's/^/      /' "$2" >&2
  exit 1
}
# run NAME COMMAND...: quiet on success, the command's output on failure.
run() {
  local name=$1
  shift
  local log="$work/$(echo "$name" | tr -c 'A-Za-z0-9' '_').log"
  if "$@" >"$log" 2>&1; then ok "$name"; else fail "$name" "$log"; fi
}

for tool in "$SAM" "$CFN_LINT" "$CHECKOV" "$UV" "$PYTHON313"; do
  [[ -x $tool ]] || fail "missing $tool (run ./dev setup)"
done
[[ -f $FIXTURE_ARCHIVE && -f $FIXTURE_ARCHIVE.sha256 ]] || fail "missing $FIXTURE_ARCHIVE (run ./dev setup)"

# --- sam build in the background: it is the slow part (pip downloads), the rest overlaps with it ------
fixture_sha256=$(cut -c1-64 "$FIXTURE_ARCHIVE.sha256")
# sam builds the function's layer with it (the function's Layers name ModelLayer): the fixture model there too.
env MODEL_NAME=$MODEL_NAME MODEL_ARCHIVE="$PWD/$FIXTURE_ARCHIVE" MODEL_ARCHIVE_SHA256="$fixture_sha256" \
  "$SAM" build RerankFunction --cached --cache-dir "$FUNCTION_CACHE" --build-dir "$work/build-function" \
  >"$work/build-function.log" 2>&1 &
function_build_pid=$!
background_pids+=("$function_build_pid")
# sam runs the Makefile in a scratch copy of layer/: give it an absolute archive path.
env MODEL_NAME=$MODEL_NAME MODEL_ARCHIVE="$PWD/$FIXTURE_ARCHIVE" MODEL_ARCHIVE_SHA256="$fixture_sha256" \
  "$SAM" build ModelLayer --build-dir "$work/build-layer" >"$work/build-layer.log" 2>&1 &
layer_build_pid=$!
background_pids+=("$layer_build_pid")

# --- handler/requirements.txt: current with uv.lock, and the complete closure of what the function imports --
run "handler/requirements.txt matches uv.lock" \
  env UV="$UV" UV_PYTHON="$PYTHON313" .venv/bin/python -m tools.runtime_requirements --check
# Install the file alone (no dependency resolution, as handler/Makefile does) for this machine and serve an
# event from it in an isolated interpreter: a missing runtime package fails here, not on Lambda.
closure_check() {
  "$PYTHON313" -m pip install --quiet --no-deps --require-hashes --only-binary=:all: \
    --target "$work/closure" -r handler/requirements.txt || return 1
  cp -R handler/reranker "$work/closure/reranker"
  (cd "$work" && env -i PATH="$PATH" HOME="$HOME" MODEL_DIR="$OLDPWD/.fixtures/int8/$MODEL_NAME" \
    POWERTOOLS_TRACE_DISABLED=true "$PYTHON313" -I -c '
import json, sys
sys.path[:0] = [sys.argv[1]]
import reranker.app as app
class Context:
    function_name, function_version, memory_limit_in_mb, aws_request_id = "reranker", "1", 1769, "closure-check"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:reranker"
    def get_remaining_time_in_millis(self): return 30000
event = json.load(open(sys.argv[2]))
answer = app.lambda_handler(event, Context())
assert answer["results"], answer
leaked = sorted({name.split(".")[0] for name in sys.modules} & {"boto3", "botocore", "huggingface_hub"})
assert not leaked, leaked
' "$work/closure" "$OLDPWD/events/direct-rerank.json")
}
closure_check >"$work/closure.log" 2>&1 &
closure_pid=$!
background_pids+=("$closure_pid")

# --- template checks --------------------------------------------------------------------------------
run "cfn-lint template.yaml" "$CFN_LINT" template.yaml
run "sam validate --region us-east-1" "$SAM" validate --region us-east-1 --template template.yaml
run "sam validate --lint" "$SAM" validate --lint --template template.yaml
run "translate template (samtranslator, offline)" \
  .tools/sam/bin/python tools/translate_template.py template.yaml -o "$work/translated.json"
run "cfn-lint translated template" "$CFN_LINT" "$work/translated.json"
run "sam local reads the model layer and every route (tools/sam_local)" \
  .tools/sam/bin/python -m tools.sam_local.check_template template.yaml

# checkov: zero failed checks, and every skipped check carries its reason (checkov:skip comments in
# template.yaml, summarised in .checkov.yaml).
"$CHECKOV" --config-file .checkov.yaml -f template.yaml -f "$work/translated.json" \
  --output json >"$work/checkov.json" 2>"$work/checkov.log" || true
if ! .venv/bin/python - "$work/checkov.json" >"$work/checkov-summary.log" 2>&1 <<'EOF'; then
import json
import sys

loaded = json.load(open(sys.argv[1], encoding="utf-8"))
reports = loaded if isinstance(loaded, list) else [loaded]
failed, unexplained, passed = [], [], 0
for report in reports:
    results = report.get("results", {})
    passed += report.get("summary", {}).get("passed", 0)
    for check in results.get("failed_checks", []):
        failed.append(f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}")
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
        if not reason or reason.lower().startswith("no comment provided"):
            unexplained.append(f"{check['check_id']} {check['resource']}: skipped without a reason")
if passed == 0:
    failed.append("checkov ran no checks (see its log)")
for line in failed + unexplained:
    print(line)
sys.exit(1 if failed or unexplained else 0)
EOF
  cat "$work/checkov.log" >>"$work/checkov-summary.log"
  fail "checkov (no failed checks, every skip explained)" "$work/checkov-summary.log"
fi
ok "checkov (no failed checks, every skip explained)"

wait "$closure_pid" || fail "handler/requirements.txt alone serves an event (no boto3 import)" "$work/closure.log"
ok "handler/requirements.txt alone serves an event (no boto3 import)"

# --- sam build results -------------------------------------------------------------------------------
wait "$layer_build_pid" || fail "sam build ModelLayer (fixture archive)" "$work/build-layer.log"
layer_model="$work/build-layer/ModelLayer/models/$MODEL_NAME"
for file in config.json tokenizer.json tokenizer_config.json special_tokens_map.json; do
  [[ -s $layer_model/$file ]] || fail "layer holds models/$MODEL_NAME/$file" "$work/build-layer.log"
done
compgen -G "$layer_model/*.onnx" >/dev/null || fail "layer holds an ONNX model" "$work/build-layer.log"
[[ $(cat "$layer_model/.archive-sha256") == "$fixture_sha256" ]] \
  || fail "layer .archive-sha256 is the fixture's sha256" "$work/build-layer.log"
ok "sam build ModelLayer (fixture archive, /opt/models/$MODEL_NAME)"

wait "$function_build_pid" || fail "sam build RerankFunction (python3.13, arm64)" "$work/build-function.log"
function_dir="$work/build-function/RerankFunction"
[[ -f $function_dir/reranker/__init__.py ]] || fail "built function holds the reranker package"
for pattern in \
  "onnxruntime/capi/onnxruntime_pybind11_state.cpython-313-*.so" \
  "numpy/_core/_multiarray_umath.cpython-313-*.so" \
  "tokenizers/tokenizers*.so"; do
  matches=("$function_dir"/$pattern)
  [[ -f ${matches[0]} ]] || fail "built function holds $pattern" "$work/build-function.log"
  # ELF e_machine at offset 18: 0xb7 0x00 is aarch64.
  [[ $(od -An -tx1 -j18 -N2 "${matches[0]}" | tr -d ' \n') == b700 ]] \
    || fail "built function's ${matches[0]#"$function_dir"/} is not aarch64"
done
ok "sam build RerankFunction (aarch64 onnxruntime, numpy, tokenizers)"

# The arm64 package Lambda gets is held to the same budget as the host build in tests/artifact.
budget=$(.venv/bin/python -c 'import ast, sys
tree = ast.parse(open("layer/build_layer.py").read())
print(next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
           and node.targets[0].id == "FUNCTION_PACKAGE_BUDGET_BYTES"))')
read -r size files < <(find "$function_dir" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { print s, n }')
(( size <= budget )) || fail "arm64 function package is $size bytes in $files files, over its budget of $budget bytes"
ok "arm64 function package $((size / 1000000)) MB in $files files (budget $((budget / 1000000)) MB)"
