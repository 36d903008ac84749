"""Constrained types for what callers send, shared by the routes, so that the OpenAPI schema
says exactly what the API accepts (the same rules the core checks; schemathesis holds the two
together in CI)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ..core.keys import KEY_PREFIX, TENANT_PATTERN
from ..core.tenants import MAX_COUNT, MAX_TOKENS

# A tenant's name, as core.keys.validate_tenant accepts it.
TENANT_REGEX = f"^{TENANT_PATTERN.pattern}$"
TenantName = Annotated[str, Field(pattern=TENANT_REGEX, description="1-63 characters of "
                                  "a-z, 0-9, '_', '.' and '-', starting with a letter or digit")]
# An API key as listed: its prefix (at least 6 characters: `tg_` and some) or its id.
KEY_REF_REGEX = f"^(?:{KEY_PREFIX}[A-Za-z0-9_-]{{3,}}…?|[0-9a-f]{{32}})$"
KEY_REF_DESCRIPTION = "the key's prefix as `keys list` shows it (e.g. tg_AbC1234), or its id"
# An SSE event id to resume after (`Last-Event-ID`).
EVENT_ID_REGEX = r"^[0-9]{1,18}$"
# Text stored as given: PostgreSQL cannot store NUL in a string.
NO_NUL_REGEX = "^[^\\x00]*$"
# A webhook URL: https:// (http:// in dev), checked further when it is registered.
WEBHOOK_URL_REGEX = "^[hH][tT][tT][pP][sS]?://[^\\s]+$"


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


# A whole number as JSON Schema has it (919 and 919.0 alike), never `true`/`false`, within
# bounds. The bounds come before the validator: given after it, or on an optional field's
# Field(), pydantic still checks them but writes them into the schema as `ge`/`le`, which
# JSON Schema does not know, so no client or generator sees them.
WholeNumber = Annotated[int, BeforeValidator(_not_a_bool)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT), BeforeValidator(_not_a_bool)]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS), BeforeValidator(_not_a_bool)]
# A number, never `true`/`false` (which pydantic would otherwise read as 1 and 0).
Number = Annotated[float, Field(strict=True)]
