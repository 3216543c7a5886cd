"""LangChain integration: the ChatInternVL chat model and its helpers."""
