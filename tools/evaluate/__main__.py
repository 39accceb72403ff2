"""Does reranking pay on your data? First stage against reranked on a BEIR-layout folder.

    ./dev eval DATA_DIR [--candidates 50] [--min-gain 0.03] [--json [FILE]] [--plot [FILE]]
        [--model-dir DIR | --endpoint URL [--cohere] [--token TOKEN] [--unsigned] | --function NAME]

--json and --plot without FILE write .cache/eval/<DATA_DIR's name>.json / .png (git-ignored).

DATA_DIR holds corpus.jsonl, queries.jsonl and qrels/test.tsv (BEIR); run.trec, when present, gives the
first-stage candidates, else BM25 (bm25s) over the corpus does. Exit code 0 when the evaluation ran (whatever
the verdict), 2 for bad usage or an unreadable dataset or target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tools.evaluate.dataset import DatasetError, load_dataset
from tools.evaluate.evaluation import DEFAULT_CANDIDATES, DEFAULT_MIN_GAIN, evaluate
from tools.evaluate.report import print_report, write_plot
from tools.evaluate.targets import (
    DEFAULT_MODEL_DIR,
    DEFAULT_TIMEOUT_SECONDS,
    HttpEndpoint,
    LambdaFunction,
    LocalEngine,
    Target,
    TargetError,
)
from tools.invoke import fixture_notice

# Where --json and --plot write when given no FILE: a git-ignored folder of the project, never a tracked file.
REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO / ".cache" / "eval"
AUTO_OUTPUT = Path("<named after DATA_DIR>")  # --json / --plot given without FILE


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev eval",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="a BEIR-layout dataset folder")
    parser.add_argument(
        "--candidates",
        type=positive_int,
        default=DEFAULT_CANDIDATES,
        help=f"first-stage candidates per query, all sent in one request (default {DEFAULT_CANDIDATES}; "
        "keep it within the service's MAX_PASSAGES)",
    )
    parser.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help=f"nDCG@5 gain that makes reranking worth it (default {DEFAULT_MIN_GAIN})",
    )
    parser.add_argument("--max-queries", type=positive_int, help="evaluate only the first N judged queries")
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=AUTO_OUTPUT,
        metavar="FILE",
        help="write the summary as JSON (default FILE: .cache/eval/<DATA_DIR name>.json)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        nargs="?",
        const=AUTO_OUTPUT,
        metavar="FILE",
        help="write a PNG: metrics by k and latencies (default FILE: .cache/eval/<DATA_DIR name>.png)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--model-dir",
        type=Path,
        help=f"a FlashRank model directory, run in-process (default {DEFAULT_MODEL_DIR.relative_to(REPO)})",
    )
    target.add_argument("--endpoint", metavar="URL", help="the deployed API's base URL (stack output ApiUrl)")
    target.add_argument(
        "--function", metavar="NAME", help="a Lambda function name or (alias) ARN: direct invoke"
    )
    parser.add_argument("--cohere", action="store_true", help="with --endpoint: use POST /v2/rerank")
    parser.add_argument(
        "--token", help="with --endpoint: send this bearer token instead of signing (AuthMode=bearer)"
    )
    parser.add_argument(
        "--unsigned", action="store_true", help="with --endpoint: no auth at all (a local ./dev serve)"
    )
    parser.add_argument("--region", help="AWS region (default: from the URL or ARN, else the AWS config)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds to wait for one answer (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.endpoint is None and (args.cohere or args.token or args.unsigned):
        parser.error("--cohere, --token and --unsigned need --endpoint")
    if args.token and args.unsigned:
        parser.error("--token and --unsigned exclude each other")
    name = args.data_dir.resolve().name or "eval"
    if args.json == AUTO_OUTPUT:
        args.json = OUTPUT_DIR / f"{name}.json"
    if args.plot == AUTO_OUTPUT:
        args.plot = OUTPUT_DIR / f"{name}.png"
    return args


def make_target(args: argparse.Namespace) -> Target:
    if args.endpoint is not None:
        return HttpEndpoint(
            args.endpoint,
            cohere=args.cohere,
            token=args.token,
            region=args.region,
            unsigned=args.unsigned,
            timeout_seconds=args.timeout,
        )
    if args.function is not None:
        return LambdaFunction(args.function, region=args.region, timeout_seconds=args.timeout)
    return LocalEngine(args.model_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # soft_wrap: long paths and error messages stay on one line (rich wraps at 80 columns off a terminal).
    console = Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        dataset = load_dataset(args.data_dir)
        target = make_target(args)
    except (DatasetError, TargetError) as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    if isinstance(target, LocalEngine):
        notice = fixture_notice(target.model_dir, f"./dev eval {args.data_dir}")
        if notice:
            errors.print(notice, highlight=False, markup=False)
    queries = len(dataset.evaluated_queries[: args.max_queries])
    source = "run.trec" if dataset.run is not None else "BM25 (bm25s)"
    errors.print(
        f"{args.data_dir}: {len(dataset.corpus)} documents, {queries} judged queries; first stage: {source}",
        highlight=False,
    )
    if dataset.skipped_queries:
        errors.print(
            f"[yellow]{len(dataset.skipped_queries)} judged queries are not in queries.jsonl: skipped"
        )
    if dataset.missing_run_docs:
        errors.print(
            f"[yellow]run.trec names {dataset.missing_run_docs} documents not in the corpus: skipped"
        )
    with Progress(
        TextColumn("reranking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        disable=args.no_progress,
    ) as progress:
        task = progress.add_task("queries", total=queries)
        evaluation = evaluate(
            dataset,
            target,
            candidates=args.candidates,
            min_gain=args.min_gain,
            max_queries=args.max_queries,
            on_query=lambda: progress.advance(task),
        )
    for message, count in evaluation.errors.most_common(5):
        errors.print(f"[yellow]{count} failed requests:[/yellow] {message}", highlight=False)
    if any("PayloadTooLarge" in message or "HTTP 413" in message for message in evaluation.errors):
        errors.print(
            "hint: the service refused the request size: lower --candidates (see MAX_PASSAGES, MAX_*_CHARS)"
        )
    print_report(evaluation, console, target=target.description, min_gain=args.min_gain)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(evaluation.summary, indent=2) + "\n", encoding="utf-8")
        errors.print(f"wrote {args.json}", highlight=False)
    if args.plot is not None:
        write_plot(
            evaluation,
            args.plot,
            title=f"Does reranking pay on {args.data_dir.name}?",
            min_gain=args.min_gain,
        )
        errors.print(f"wrote {args.plot}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
