"""The real Cohere SDK (v1 and v2) and LangChain's CohereRerank against the function, unmodified.

tools.serve turns each HTTP request into an HTTP API (2.0) event for lambda_handler; bearer tokens come
from a SecureString in moto's SSM (server mode, reached through AWS_ENDPOINT_URL_SSM as boto3 would in Lambda).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import cohere
import pytest
from cohere.core.api_error import ApiError
from langchain_cohere import CohereRerank
from langchain_core.documents import Document

from tools.serve import make_server

pytestmark = pytest.mark.xdist_group("cohere-server")

API_KEY = "test-key-0123456789"
OTHER_KEY = "rotated-key-abcdef"
PARAMETER = "/reranker/it/bearer-tokens"
QUERY = "which airship crossed the atlantic"
DOCUMENTS = [
    "The cat slept on the warm windowsill all afternoon.",
    "The airship crossed the Atlantic in four days, landing in New Jersey.",
    "Stock markets fell sharply on Tuesday.",
    "Early airships used hydrogen for lift, which made them dangerous.",
    "A recipe for lemon cake with a light glaze.",
]


class Requests:
    """Counts the requests the server saw, per path (to prove clients did not retry 4xx)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self.handler = handler
        self.paths: list[str] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.paths.append(event["rawPath"])
        return self.handler(event, context)


@pytest.fixture(scope="module")
def ssm_parameter(moto_endpoint: str) -> str:
    client = boto3.client(
        "ssm",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.put_parameter(Name=PARAMETER, Value=f"{API_KEY}\n{OTHER_KEY}", Type="SecureString", Overwrite=True)
    return PARAMETER


@pytest.fixture
def bearer_app(
    configure: Callable[..., ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    ssm_parameter: str,
    tmp_path: Any,
) -> ModuleType:
    """The handler with AUTH_MODE=bearer; boto3 (inside Powertools) reaches moto as it would reach SSM."""
    from aws_lambda_powertools.utilities import parameters

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SSM": moto_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    return configure(AUTH_MODE="bearer", AUTH_TOKENS_PARAMETER=ssm_parameter)


@pytest.fixture
def server(bearer_app: ModuleType) -> Iterator[tuple[str, Requests]]:
    requests = Requests(bearer_app.lambda_handler)
    httpd = make_server(requests)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def native_scores(base_url: str, documents: list[str], key: str = API_KEY) -> list[float]:
    status, body = post(base_url, "/rerank", {"query": QUERY, "passages": documents}, key)
    assert status == 200, body
    by_index = {result["index"]: result["score"] for result in body["results"]}
    return [by_index[index] for index in range(len(documents))]


def post(base_url: str, path: str, payload: object, key: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        base_url + path, data=json.dumps(payload).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- cohere SDK v2 ---------------------------------------------------------------------------------


def test_cohere_client_v2_rerank(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    client = cohere.ClientV2(base_url=base_url, api_key=API_KEY)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=3)
    scores = native_scores(base_url, DOCUMENTS)
    assert len(response.results) == 3
    assert [r.index for r in response.results] == sorted(range(5), key=lambda i: -scores[i])[:3]
    assert [r.relevance_score for r in response.results] == sorted(scores, reverse=True)[:3]
    assert response.meta is not None and response.meta.api_version is not None
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units is not None and response.meta.billed_units.search_units == 1
    assert response.id


def test_cohere_client_v2_max_tokens_per_doc(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    client = cohere.ClientV2(base_url=base_url, api_key=API_KEY)
    long_document = "airship " * 600
    response = client.rerank(
        model="rerank-v3.5", query=QUERY, documents=[long_document, "short"], max_tokens_per_doc=16
    )
    assert sorted(r.index for r in response.results) == [0, 1]


# --- cohere SDK v1 ---------------------------------------------------------------------------------


def test_cohere_client_v1_rerank_returns_documents(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    client = cohere.Client(base_url=base_url, api_key=OTHER_KEY)  # the rotated key works too
    response = client.rerank(query=QUERY, documents=DOCUMENTS, top_n=2, return_documents=True)
    scores = native_scores(base_url, DOCUMENTS)
    best = sorted(range(5), key=lambda i: -scores[i])[:2]
    assert [r.index for r in response.results] == best
    assert [r.document.text for r in response.results if r.document] == [DOCUMENTS[i] for i in best]
    assert response.meta is not None and response.meta.api_version is not None
    assert response.meta.api_version.version == "1"


def test_cohere_client_v1_objects_with_rank_fields_and_chunks(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    client = cohere.Client(base_url=base_url, api_key=API_KEY)
    documents = [{"title": "Airships", "text": DOCUMENTS[1]}, {"title": "Cake", "text": DOCUMENTS[4]}]
    response = client.rerank(
        query=QUERY,
        documents=documents,
        rank_fields=["title", "text"],
        return_documents=True,
        max_chunks_per_doc=2,
    )
    assert len(response.results) == 2
    assert all(
        r.document is not None and r.document.text in (DOCUMENTS[1], DOCUMENTS[4]) for r in response.results
    )


# --- errors and auth -------------------------------------------------------------------------------


def test_a_wrong_key_is_a_401_in_cohere_shape_and_is_not_retried(server: tuple[str, Requests]) -> None:
    base_url, requests = server
    client = cohere.ClientV2(base_url=base_url, api_key="wrong-key")
    with pytest.raises(ApiError) as raised:
        client.rerank(model="m", query=QUERY, documents=DOCUMENTS)
    assert raised.value.status_code == 401
    assert raised.value.body == {"message": "invalid bearer token"}
    assert requests.paths == ["/v2/rerank"]
    assert raised.value.headers is not None and raised.value.headers.get("www-authenticate") == "Bearer"


def test_a_bad_request_is_a_400_with_a_message_and_is_not_retried(server: tuple[str, Requests]) -> None:
    base_url, requests = server
    client = cohere.ClientV2(base_url=base_url, api_key=API_KEY)
    with pytest.raises(ApiError) as raised:
        client.rerank(model="m", query="", documents=DOCUMENTS)
    assert raised.value.status_code == 400
    assert raised.value.body == {"message": "query must not be empty"}
    assert requests.paths == ["/v2/rerank"]


def test_native_routes_answer_401_in_the_native_shape(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    status, body = post(base_url, "/rerank", {"query": QUERY, "passages": DOCUMENTS}, key=None)
    assert status == 401
    assert body == {"error": {"type": "Unauthorized", "message": body["error"]["message"]}}
    assert "missing bearer token" in body["error"]["message"]
    status, body = post(base_url, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}, key="nope")
    assert (status, body) == (401, {"message": "invalid bearer token"})


# --- LangChain -------------------------------------------------------------------------------------


def test_langchain_cohere_rerank_compress_documents_and_rerank(server: tuple[str, Requests]) -> None:
    base_url, _ = server
    reranker = CohereRerank(base_url=base_url, cohere_api_key=API_KEY, model="rerank-v3.5", top_n=2)
    documents = [Document(page_content=text, metadata={"n": index}) for index, text in enumerate(DOCUMENTS)]
    compressed = reranker.compress_documents(documents, QUERY)
    scores = native_scores(base_url, DOCUMENTS)
    best = sorted(range(5), key=lambda i: -scores[i])[:2]
    assert [document.metadata["n"] for document in compressed] == best
    assert [document.metadata["relevance_score"] for document in compressed] == [scores[i] for i in best]
    ranked = reranker.rerank(DOCUMENTS, QUERY, top_n=None)
    assert [item["index"] for item in ranked] == sorted(range(5), key=lambda i: -scores[i])
