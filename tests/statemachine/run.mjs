// Runs one execution of a state machine with aws-local-stepfunctions, every `arn:aws:states:::lambda:invoke`
// Task wired to a local program that plays the Lambda Invoke API (tools/invoke_direct.py: lambda_handler in a
// fresh process). Used by tests/integration/test_state_machines.py.
//
//   node run.mjs < job.json > report.json
//
// job: {
//   "definition": {...ASL, substitutions applied...},
//   "input": <execution input>,
//   "invoke": {"command": ["python", "-m", "tools.invoke_direct"], "cwd": "/repo",
//              "environments": [{"MODEL_DIR": "/missing"}, ...]},  // the n-th invoke's environment changes
//   "retryIntervalMs": 0,       // optional: pause before each retry instead of IntervalSeconds/backoff/jitter
//   "timeoutMs": 60000          // the whole execution is aborted after this long
// }
// report: {"status": "SUCCEEDED" | "FAILED" | "TIMED_OUT", "output", "error", "cause", "invocations": [...],
//          "events": [...the library's execution event log, inputs left out...]}
//
// What Step Functions' lambda:invoke integration does, and so what the override below does: the Task's
// effective Parameters are {"FunctionName", "Payload", ...}; the function receives Payload. A success becomes
// {"ExecutedVersion", "Payload": <the function's answer>, "SdkHttpMetadata", "SdkResponseMetadata",
// "StatusCode": 200}. A function error (the Invoke API's FunctionError) becomes a state error whose name is
// the error document's errorType (the raised class name, what Retry / Catch match) and whose cause is that
// document as a JSON string. A result over 256 KB fails the state with States.DataLimitExceeded.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { StateMachine, ExecutionError, ExecutionTimeoutError } from 'aws-local-stepfunctions';

const LAMBDA_INVOKE = 'arn:aws:states:::lambda:invoke';
const STATE_LIMIT_BYTES = 256 * 1024;
const INVOKE_TIMEOUT_MS = 60_000;
const REQUIRED_NODE_MAJOR = 22; // aws-local-stepfunctions 3 needs it (Promise.withResolvers)

if (Number(process.versions.node.split('.')[0]) < REQUIRED_NODE_MAJOR) {
  console.error(`node ${process.versions.node}: aws-local-stepfunctions needs node >= ${REQUIRED_NODE_MAJOR}`);
  process.exit(3);
}

/** An error that no Retry or Catch of the definition names: the harness itself failed. */
class HarnessError extends Error {
  constructor(message) {
    super(message);
    this.name = 'Harness.Failure';
  }
}

/** Every Task state (nested Map / Parallel ones too) that uses the lambda:invoke integration, by name. */
function lambdaTaskStates(states, found = new Set()) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task' && state.Resource === LAMBDA_INVOKE) found.add(name);
    const processor = state.ItemProcessor ?? state.Iterator;
    if (processor) lambdaTaskStates(processor.States, found);
    for (const branch of state.Branches ?? []) lambdaTaskStates(branch.States, found);
  }
  return found;
}

function statesWithRetry(states, found = new Set()) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Retry) found.add(name);
    const processor = state.ItemProcessor ?? state.Iterator;
    if (processor) statesWithRetry(processor.States, found);
    for (const branch of state.Branches ?? []) statesWithRetry(branch.States, found);
  }
  return found;
}

/** Run the invoke program once: the payload on stdin, the Invoke API's answer on stdout. */
function runInvokeProgram(invoke, payload, environment) {
  return new Promise((resolve, reject) => {
    const [program, ...args] = invoke.command;
    const child = spawn(program, args, {
      cwd: invoke.cwd,
      env: { ...process.env, ...environment },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout = [];
    const stderr = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), INVOKE_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => stdout.push(chunk));
    child.stderr.on('data', (chunk) => stderr.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new HarnessError(`cannot start ${program}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const log = Buffer.concat(stderr).toString('utf8');
      if (code !== 0) {
        reject(new HarnessError(`${invoke.command.join(' ')} exited ${code ?? signal}: ${log.slice(-4000)}`));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(stdout).toString('utf8')));
      } catch (error) {
        reject(new HarnessError(`the invoke program printed no JSON answer: ${error.message}`));
      }
    });
    child.stdin.end(JSON.stringify(payload ?? {}));
  });
}

/** The lambda:invoke integration (request-response) in front of the invoke program. */
function lambdaInvokeOverride(stateName, invoke, invocations) {
  return async (parameters) => {
    if (!parameters || typeof parameters.FunctionName !== 'string') {
      throw new HarnessError(`${stateName}: lambda:invoke Parameters need a FunctionName`);
    }
    if ((parameters.InvocationType ?? 'RequestResponse') !== 'RequestResponse') {
      throw new HarnessError(`${stateName}: only RequestResponse invokes are emulated`);
    }
    const number = invocations.length;
    const environment = invoke.environments?.[number] ?? {};
    const record = {
      state: stateName,
      functionName: parameters.FunctionName,
      payload: parameters.Payload,
      environment,
    };
    invocations.push(record);
    const started = Date.now();
    const answer = await runInvokeProgram(invoke, parameters.Payload, environment);
    record.ms = Date.now() - started;
    if (answer.FunctionError) {
      const document = answer.Payload ?? {};
      record.functionError = answer.FunctionError;
      record.errorType = document.errorType;
      const error = new Error(JSON.stringify(document));
      error.name = document.errorType || 'Lambda.Unknown';
      throw error;
    }
    const result = {
      ExecutedVersion: answer.ExecutedVersion,
      Payload: answer.Payload,
      SdkHttpMetadata: {
        HttpHeaders: { 'Content-Type': 'application/json', 'X-Amz-Executed-Version': answer.ExecutedVersion },
        HttpStatusCode: answer.StatusCode,
      },
      SdkResponseMetadata: { RequestId: randomUUID() },
      StatusCode: answer.StatusCode,
    };
    const bytes = Buffer.byteLength(JSON.stringify(result), 'utf8');
    if (bytes > STATE_LIMIT_BYTES) {
      const error = new Error(`The state/task '${stateName}' returned a result with a size exceeding the maximum number of bytes service limit (${bytes} bytes).`);
      error.name = 'States.DataLimitExceeded';
      throw error;
    }
    return result;
  };
}

function summarizeEvent(event) {
  const summary = { type: event.type };
  if (event.state) summary.state = event.state.name;
  if (event.index !== undefined) summary.index = event.index;
  if (event.Error !== undefined) summary.error = event.Error;
  if (event.Cause !== undefined) summary.cause = event.Cause;
  if (event.retry) summary.retryAttempt = event.retry.attempt;
  if (event.catch) summary.caughtBy = event.catch.catcher.ErrorEquals;
  if (event.type === 'StateExited') summary.output = event.state.output;
  return summary;
}

async function collect(eventLogs, into) {
  for await (const event of eventLogs) into.push(summarizeEvent(event));
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const job = await readStdin();
  const definition = job.definition;
  const invocations = [];
  const taskResourceLocalHandlers = {};
  for (const name of lambdaTaskStates(definition.States)) {
    taskResourceLocalHandlers[name] = lambdaInvokeOverride(name, job.invoke, invocations);
  }
  const retryIntervalOverrides = {};
  if (job.retryIntervalMs !== undefined) {
    for (const name of statesWithRetry(definition.States)) retryIntervalOverrides[name] = job.retryIntervalMs;
  }
  const machine = new StateMachine(definition);
  const execution = machine.run(job.input, {
    overrides: { taskResourceLocalHandlers, retryIntervalOverrides },
  });
  const events = [];
  const collecting = collect(execution.eventLogs, events);
  const timer = setTimeout(execution.abort, job.timeoutMs ?? 60_000);
  const report = { status: 'SUCCEEDED', output: null, error: null, cause: null };
  try {
    report.output = await execution.result;
  } catch (error) {
    const reason = error instanceof ExecutionError ? error.cause : error;
    report.status = error instanceof ExecutionTimeoutError || error?.name === 'ExecutionAbortedError'
      ? 'TIMED_OUT' : 'FAILED';
    report.error = reason?.name ?? String(reason);
    report.cause = reason?.message ?? null;
  } finally {
    clearTimeout(timer);
  }
  await collecting;
  report.invocations = invocations;
  report.events = events;
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
