"""The provider-quota limiter over Redis (see :mod:`.redis_limiter` for the key layout)."""

from .redis_limiter import RedisLimiter

__all__ = ["RedisLimiter"]
