import os

from llama_index.core import SummaryIndex
from llama_index.core.schema import TextNode

from lambda_reranker_client import RerankerClient
from lambda_reranker_client.llamaindex import LambdaRerank

texts = ["A cross-encoder scores query and passage together.", "Bananas are yellow.", "Paris is in France."]
index = SummaryIndex([TextNode(text=text) for text in texts])  # stands in for your index
rerank = LambdaRerank(RerankerClient.from_url(os.environ["RERANKER_URL"]), top_n=2)
# In a query engine: index.as_query_engine(llm=your_llm, node_postprocessors=[rerank]); or on its own:
query = "what is a cross-encoder?"
for node in rerank.postprocess_nodes(index.as_retriever().retrieve(query), query_str=query):
    print(round(node.score, 3), node.node.get_content())
