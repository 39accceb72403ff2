import os

from lambda_reranker_client import RerankerClient

# Stack output ApiUrl (SigV4 service execute-api) or FunctionUrl (service lambda): the host says which.
# Credentials come from botocore's usual chain (environment, profile, SSO, instance role).
client = RerankerClient.from_url(os.environ["RERANKER_URL"])
response = client.rerank(
    "what is a cross-encoder?",
    [{"id": "ce", "text": "A cross-encoder scores query and passage together."}, "Bananas are yellow."],
    top_k=1,
)
print(response.results[0].id, round(response.results[0].score, 3), response.usage.passages)

# No API in front (the Step Functions path): Lambda Invoke, needs lambda:InvokeFunction.
direct = RerankerClient.from_function(os.environ["RERANKER_FUNCTION"])  # name, or FunctionAliasArn
print([result.index for result in direct.rerank("cross-encoder", ["bananas", "a cross-encoder"]).results])
