"""The provider-quota limiter over Redis (see :mod:`.redis_limiter` for the key layout), and the
lanes' calibrated token estimates (:mod:`.calibration`)."""

from .calibration import RedisCalibrator
from .redis_limiter import RedisLimiter

__all__ = ["RedisCalibrator", "RedisLimiter"]
