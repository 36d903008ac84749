"""The LLM gateway: every provider call a job makes goes through admission control, error
classification, retries and fallbacks here."""

from .gateway import GatewayPolicy, JobLLM, LLMGateway

__all__ = ["GatewayPolicy", "JobLLM", "LLMGateway"]
