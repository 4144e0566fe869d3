"""pytest-azsim: run azsim (local Entra ID, Key Vault, Azure Backup) for a test session."""
from .stack import (
    ADMIN_CLIENT_ID,
    ADMIN_CLIENT_SECRET,
    ADMIN_OBJECT_ID,
    ADMIN_USER,
    ADMIN_USER_PASSWORD,
    HOST_IDENTITY_CLIENT_ID,
    IDENTITY_HEADER,
    SUBSCRIPTION_ID,
    TENANT_ID,
    AzsimStack,
    azsim_binary,
    start,
)

__all__ = [
    "ADMIN_CLIENT_ID",
    "ADMIN_CLIENT_SECRET",
    "ADMIN_OBJECT_ID",
    "ADMIN_USER",
    "ADMIN_USER_PASSWORD",
    "HOST_IDENTITY_CLIENT_ID",
    "IDENTITY_HEADER",
    "SUBSCRIPTION_ID",
    "TENANT_ID",
    "AzsimStack",
    "azsim_binary",
    "start",
]
