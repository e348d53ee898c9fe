"""A small service: reads its settings from the environment, never from the code."""

import os
import threading

LOCAL = threading.local()
DEFAULT_HOST = "127.0.0.1"
PUBLIC_RESOLVER = "8.8.8.8"
SUPPORT = "support@example.com"
HOME_HINT = "/home/user/.config/service"
REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"


def database_password() -> str:
    return os.environ["DATABASE_PASSWORD"]


def greeting(name: str) -> str:
    return f"hello, {name}"
