"""Generation backends: the in-process vLLM engine, or an OpenAI-compatible server."""
